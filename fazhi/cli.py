"""The ``fazhi`` command line. Every bad input ends in one line on stderr and exit code 2."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

from fazhi.errors import FazhiError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
EXIT_BAD_INPUT = 2


def fail(message: str) -> None:
    typer.echo(f"fazhi: error: {message}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def user_errors(fn: Callable) -> Callable:
    """Turn :class:`FazhiError` (and unreadable files) into one line on stderr, exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FazhiError as err:
            fail(str(err))
        except (OSError, UnicodeError) as err:
            fail(f"{getattr(err, 'filename', None) or 'input'}: {err.__class__.__name__}: {err}")

    return wrapper


@app.callback()
def main() -> None:
    """fazhi: read, tag, summarise and serve Chinese rule-of-law government reports."""


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


@app.command()
@user_errors
def parse(
    file: Path = typer.Argument(..., help="Report file: .txt, .html/.htm, .docx or .pdf"),
    format: str = typer.Option("json", "--format", "-f", help="json or md"),
    max_bytes: Optional[int] = typer.Option(None, help="Size limit in bytes (default 20 MB or $FAZHI_MAX_BYTES)"),
) -> None:
    """Split a report into meta and outline paragraphs."""
    from corpora import read_document, to_markdown

    if format not in ("json", "md"):
        fail(f"--format: expected json or md, got {format!r}")
    doc = read_document(file, max_bytes=max_bytes)
    if format == "json":
        emit_json(doc.to_dict())
    else:
        sys.stdout.write(to_markdown(doc) + "\n")


if __name__ == "__main__":
    app()
