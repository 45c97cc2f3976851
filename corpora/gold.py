"""Human-labelled files in the gold format (``{"doc", "i", "text", "kind", "category",
"shortcoming"}``, one file per document, lines in reading order), and their alignment
with the parsed report they come from.

A gold file is its document: joining its ``text`` fields with newlines gives the report
back, so parsing that text gives each body line its real heading path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from fazhi.corpora.document import Document, Paragraph
from fazhi.corpora.outline import parse_text
from fazhi.corpora.reader import iter_jsonl
from fazhi.errors import FazhiError

GOLD_FIELDS = ("i", "text", "kind", "category", "shortcoming")


def is_gold_file(path: str | Path) -> bool:
    """Whether a .jsonl file's first record has the gold fields (else it is a JSONL corpus)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(first, dict) and all(k in first for k in GOLD_FIELDS)
    return False


def read_gold_file(path: str | Path) -> list[dict]:
    """One gold file's rows, sorted by line number ``i``."""
    path = Path(path)
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, row in iter_jsonl(fh, str(path)):
            try:
                rows.append({k: row[k] for k in GOLD_FIELDS})
            except (KeyError, TypeError) as err:
                raise FazhiError(f"{path}:{n}", f"not a gold line ({type(err).__name__}: {err})") from None
    return sorted(rows, key=lambda r: r["i"])


def gold_files(gold_dir: str | Path) -> list[Path]:
    """The ``*.jsonl`` gold files of a directory (or the one file given), sorted."""
    gold_dir = Path(gold_dir)
    files = [gold_dir] if gold_dir.is_file() else sorted(gold_dir.glob("*.jsonl")) if gold_dir.is_dir() else []
    if not files:
        raise FazhiError(str(gold_dir), "no gold *.jsonl files found")
    return files


def load_gold(gold_dir: str | Path) -> dict[str, list[dict]]:
    """Gold rows per document (file stem), in line order."""
    return {f.stem: read_gold_file(f) for f in gold_files(gold_dir)}


def align(rows: list[dict]) -> tuple[Document, list[Paragraph | None]]:
    """Parse the report a gold file stands for; for each gold row, the paragraph parsed from
    its line (None where the parser kept the line as meta or dropped it)."""
    doc = parse_text("\n".join(r["text"] for r in rows))
    # each gold row is one line of the joined text: map paragraph start offsets to line numbers
    line_of = {doc.text.count("\n", 0, p.start): p for p in doc.paragraphs}
    return doc, [line_of.get(n) for n in range(len(rows))]


def human_examples(path: Path, origin: str) -> Iterator[dict]:
    """Training rows of one gold file: each heading or body line with its human labels
    (confidence 1.0) and the heading path of its parsed paragraph; meta lines are skipped."""
    rows = read_gold_file(path)
    _, paragraphs = align(rows)
    for row, para in zip(rows, paragraphs):
        if row["kind"] == "meta":
            continue
        yield {"text": row["text"], "category": row["category"], "shortcoming": bool(row["shortcoming"]),
               "confidence": 1.0, "heading_path": list(para.heading_path) if para else [], "kind": row["kind"],
               "label_source": f"human:{origin}"}
