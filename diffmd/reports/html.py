"""HTML pages for the Snakemake report (which shows HTML files inline but offers CSV and Markdown only
as downloads).

* :func:`html_page`: one page from blocks; the yardstick tables (Tables 1-2, one-step, distributions)
  put their pandas ``DataFrame.to_html`` tables in it, rendered from the same long-format frame as
  their CSV and Markdown.
* :func:`markdown_to_html`: the HTML twin of the older Markdown-only reports (validity, costs, paper
  vs ours) and of the provenance section. Handles exactly what those writers emit: pipe tables,
  ``- `` bullet lines, plain paragraphs, ``**bold**`` and ``<u>underline</u>``; everything else is escaped.

CLI (the benchmarks' Markdown tables, cost_md17 and paper_cost, as report pages)::

    python -m diffmd.reports.html --md results/tables/paper_cost.md --html results/tables/paper_cost.html --title T
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STYLE = (
    "body{font-family:sans-serif;font-size:14px;margin:1em}"
    "table{border-collapse:collapse;margin:.6em 0}"
    "th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}"
    "th:first-child,td:first-child{text-align:left}"
    "th{background:#eee}tr:nth-child(even) td{background:#fafafa}"
    "li{margin:.2em 0}"
)


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = out.replace("&lt;u&gt;", "<u>").replace("&lt;/u&gt;", "</u>")
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _page(title: str, body: list[str]) -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def html_page(title: str, blocks: Sequence[tuple[str, Any]]) -> str:
    """One HTML page from ``(kind, content)`` blocks: ``("p", text)`` and ``("h3", text)`` (escaped),
    ``("ul", [text, ...])`` (escaped items), ``("html", fragment)`` (inserted as is, e.g. the output of
    ``DataFrame.to_html``) and ``("md", markdown)`` (through :func:`markdown_fragment`)."""
    body: list[str] = []
    for kind, content in blocks:
        if kind in ("p", "h3"):
            body.append(f"<{kind}>{html.escape(str(content), quote=False)}</{kind}>")
        elif kind == "ul":
            if content:
                body.append("<ul>" + "".join(f"<li>{html.escape(str(c), quote=False)}</li>" for c in content) + "</ul>")
        elif kind == "html":
            body.append(str(content))
        elif kind == "md":
            body.append(markdown_fragment(str(content)))
        else:
            raise ValueError(f"html_page: unknown block kind {kind!r}")
    return _page(title, body)


def markdown_to_html(md: str, title: str) -> str:
    """Render the report's Markdown (tables, bullets, paragraphs) as one HTML page."""
    return _page(title, [markdown_fragment(md)])


def markdown_fragment(md: str) -> str:
    """The body of :func:`markdown_to_html`: Markdown tables, bullets and paragraphs as HTML elements."""
    body: list[str] = []
    table: list[list[str]] = []
    bullets: list[str] = []

    def flush() -> None:
        if table:
            head, rows = table[0], table[1:]
            body.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>")
            body.extend("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows)
            body.append("</table>")
            table.clear()
        if bullets:
            body.append("<ul>" + "".join(f"<li>{_inline(b)}</li>" for b in bullets) + "</ul>")
            bullets.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            if not re.fullmatch(r"\|(\s*-+:?\s*\|)+", line.replace(" ", "")):
                table.append(_cells(line))
            continue
        if line.startswith("- "):
            bullets.append(line[2:])
            continue
        flush()
        if line.strip():
            body.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(body)


def main(argv: Sequence[str] | None = None) -> int:
    """Render one Markdown table file as an HTML page (written atomically); one error line on bad input."""
    p = argparse.ArgumentParser(prog="python -m diffmd.reports.html", description=main.__doc__)
    p.add_argument("--md", required=True, help="input Markdown (pipe tables, bullets, paragraphs)")
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
    out = Path(args.html)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(markdown_to_html(text, args.title), encoding="utf-8")
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
