"""HTML pages for the Snakemake report (which shows HTML files inline but offers CSV and Markdown only
as downloads).

* :func:`html_page`: one page from blocks; the tables put their pandas ``DataFrame.to_html`` tables in
  it, rendered from the same frame as their CSV and Markdown.
* :func:`markdown_to_html`: a Markdown file (the benchmarks' tables, cost_md17 and paper_cost) as a page,
  through Python-Markdown (``markdown`` with its ``tables`` extension: headings, pipe tables, lists, code
  spans, bold). Raw HTML in the text is escaped first (it is data, never markup), except the ``<u>``
  underline the tables use for the second best.

CLI (the benchmarks' Markdown tables as report pages)::

    python -m diffmd.reports.html --md results/tables/paper_cost.md --html results/tables/paper_cost.html --title T
"""

from __future__ import annotations

import argparse
import html
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import markdown

STYLE = (
    "body{font-family:sans-serif;font-size:14px;margin:1em}"
    "table{border-collapse:collapse;margin:.6em 0}"
    "th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}"
    "th:first-child,td:first-child{text-align:left}"
    "th{background:#eee}tr:nth-child(even) td{background:#fafafa}"
    "li{margin:.2em 0}code{font-size:90%}"
)


def _page(title: str, body: list[str]) -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def markdown_fragment(md: str) -> str:
    """Markdown (tables, lists, paragraphs, code spans, ``**bold**``, ``<u>underline</u>``) as an HTML
    fragment; any other ``<``, ``>`` or ``&`` in the text is shown as written."""
    text = html.escape(md, quote=False).replace("&lt;u&gt;", "<u>").replace("&lt;/u&gt;", "</u>")
    return markdown.markdown(text, extensions=["tables"], output_format="html")


def inline(text: str) -> str:
    """One line of Markdown (code spans, bold) as inline HTML, without the paragraph around it."""
    out = markdown_fragment(text)
    return out[3:-4] if out.startswith("<p>") and out.endswith("</p>") else out


def html_page(title: str, blocks: Sequence[tuple[str, Any]]) -> str:
    """One HTML page from ``(kind, content)`` blocks: ``("p", text)`` and ``("h3", text)`` (inline
    Markdown), ``("ul", [text, ...])`` (inline Markdown items), ``("html", fragment)`` (inserted as is,
    e.g. the output of ``DataFrame.to_html``) and ``("md", markdown)`` (through :func:`markdown_fragment`)."""
    body: list[str] = []
    for kind, content in blocks:
        if kind in ("p", "h3"):
            body.append(f"<{kind}>{inline(str(content))}</{kind}>")
        elif kind == "ul":
            if content:
                body.append("<ul>" + "".join(f"<li>{inline(str(c))}</li>" for c in content) + "</ul>")
        elif kind == "html":
            body.append(str(content))
        elif kind == "md":
            body.append(markdown_fragment(str(content)))
        else:
            raise ValueError(f"html_page: unknown block kind {kind!r}")
    return _page(title, body)


def markdown_to_html(md: str, title: str) -> str:
    """A Markdown document as one HTML page."""
    return _page(title, [markdown_fragment(md)])


def main(argv: Sequence[str] | None = None) -> int:
    """Render one Markdown table file as an HTML page (written atomically); one error line on bad input."""
    p = argparse.ArgumentParser(prog="python -m diffmd.reports.html", description=main.__doc__)
    p.add_argument("--md", required=True, help="input Markdown (pipe tables, lists, paragraphs)")
    p.add_argument("--html", required=True, help="output HTML page")
    p.add_argument("--title", required=True)
    args = p.parse_args(argv)
    src = Path(args.md)
    try:
        text = src.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: {src}: {exc.strerror if isinstance(exc, OSError) else exc}", file=sys.stderr)
        return 1
    if "|" not in text:
        print(f"error: {src}: no Markdown table in this file", file=sys.stderr)
        return 1
    from diffmd.io import write_text

    write_text(args.html, markdown_to_html(text, args.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
