"""A ``fazhi tag-many`` output folder loaded into the store (``fazhi store import``)."""

from __future__ import annotations

from pathlib import Path

from fazhi.batch import read_batch
from fazhi.serving.store import ReportRecord, ReportStore

# the fields a stored paragraph keeps (the batch rows add their report, file and position)
_BATCH_ONLY = ("report", "file", "position")


def import_batch(store: ReportStore, out: str | Path) -> tuple[int, int]:
    """Store every report of the batch in ``out`` as ``POST /v1/reports`` would have, each in its
    own transaction; a report already stored (same id: same file name and bytes) is skipped.
    Returns (stored, skipped)."""
    stored = skipped = 0
    for report, paragraphs in read_batch(out):
        if store.get(report["report"]) is not None:
            skipped += 1
            continue
        store.add(ReportRecord(meta=report["meta"], model=report["model"], title=report["title"],
                               region=report["region"], year=report["year"], source=report["file"],
                               digest=report["digest"], id=report["report"],
                               paragraphs=[{k: v for k, v in p.items() if k not in _BATCH_ONLY} for p in paragraphs]))
        stored += 1
    return stored, skipped
