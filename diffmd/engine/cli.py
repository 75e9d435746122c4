"""The engine CLIs' shared plumbing, torch-free so light CLIs (``diffmd.engine.evaluate``) start in a fraction of
a second: a bad argument or input is one line ``error: <file or key>: <what>`` and exit status 1, no traceback."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn


class OneLineArgumentParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line ``error: <what>`` and exit status 1 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(1)


def json_argument(text: str, name: str) -> dict[str, Any]:
    """The JSON object given to argument ``name``; a one-line :class:`ValueError` naming it otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name}: expected a JSON object, got {type(value).__name__}")
    return value


def run_cli(body: Callable[[], object]) -> int:
    """Run a CLI's ``body``: 0 on success; a bad argument or input (``ValueError``, ``KeyError``,
    ``FileNotFoundError``, so ``json.JSONDecodeError`` too) prints ``error: <file or key>: <what>`` on one
    line to stderr and gives 1, no traceback."""
    try:
        body()
    except (ValueError, KeyError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        first = str(message).strip().splitlines()
        print(f"error: {first[0] if first else type(exc).__name__}", file=sys.stderr)
        return 1
    return 0
