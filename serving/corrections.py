"""Reviewers' corrections as training data: corrected reports written as gold-format files.

A report with at least one correction is written whole, one line per stored paragraph in
reading order, with the reviewers' labels where they gave one and the model's elsewhere, in
the format of ``../shared/gold`` (``{"doc", "i", "text", "kind", "category", "shortcoming"}``),
so ``fazhi corpus build`` takes it as human labels (``label_source`` ``human:<folder>``).
"""

from __future__ import annotations

import json
from pathlib import Path

from fazhi.serving.store import ReportStore


def export_corrections(store: ReportStore, out: str | Path) -> tuple[list[Path], int]:
    """Write ``out/<report id>.jsonl`` for every corrected report; the files and the number of
    labels that differ from the model's."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files, changed = [], 0
    for report_id in dict.fromkeys(c["report_id"] for c in store.corrections()):
        report = store.get(report_id)
        if report is None:
            continue
        lines = []
        for i, p in enumerate(report["paragraphs"]):
            fix = p["correction"] or {}
            category, shortcoming = fix.get("category", p["category"]), fix.get("shortcoming", p["shortcoming"])
            changed += (category != p["category"]) + (shortcoming != p["shortcoming"])
            lines.append(json.dumps({"doc": report_id, "i": i, "text": p["text"], "kind": p["kind"],
                                     "category": category, "shortcoming": shortcoming}, ensure_ascii=False))
        path = out / f"{report_id}.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files.append(path)
    return files, changed
