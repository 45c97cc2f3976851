"""Cross-validation by document over a corpus's human rows (``fazhi train --folds K``).

The selection set (``annotated/dev``, the corpus's validation split) is small: 297 body lines,
15 shortcomings. Scoring K models, each trained without one K-th of the human documents of
the train split, on the documents it did not see gives a second estimate over every human
training line, to check that a choice made on the selection set holds elsewhere.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

from fazhi.errors import FazhiError
from fazhi.training.evaluate import bootstrap, scored_line, scores
from fazhi.training.train import HUMAN, TrainArgs, run


def human_folds(doc_ids: list[str], folds: int, seed: int) -> list[set[str]]:
    """The distinct human documents of ``doc_ids`` dealt into ``folds`` sets of nearly equal
    size, in an order shuffled by ``seed``."""
    docs = sorted(set(doc_ids))
    if len(docs) < folds:
        raise FazhiError("--folds", f"{folds} folds need {folds} human documents in the train split, found {len(docs)}")
    random.Random(seed).shuffle(docs)
    return [set(docs[k::folds]) for k in range(folds)]


def _held_out_lines(model_dir: Path, rows: list[dict]) -> dict[str, list[dict]]:
    """The body rows of the held-out documents scored by the fold's model, in both blocks: alone
    (``paragraph``) and under their heading paths (``document``)."""
    from fazhi.models.registry import load_classifier

    model = load_classifier(str(model_dir))
    body = [r for r in rows if r["kind"] == "body"]
    position: dict[str, int] = {}
    numbered = []
    for r in body:  # a line number per document, so that the bootstrap draws lines by document
        position[r["doc_id"]] = position.get(r["doc_id"], -1) + 1
        numbered.append({**r, "i": position[r["doc_id"]]})
    texts = [r["text"] for r in body]
    return {"paragraph": [scored_line(r["doc_id"], r, p) for r, p in zip(numbered, model.predict(texts))],
            "document": [scored_line(r["doc_id"], r, p) for r, p in
                         zip(numbered, model.predict(texts, [list(r["heading_path"] or []) for r in body]))]}


def crossval(args: TrainArgs) -> dict:
    """Train ``args.folds`` models into ``args.out``/fold-k, each on the train split less the
    human rows of fold k, and score each on fold k's body lines; write ``crossval.json`` there.

    Returns ``{"folds", "documents", "per_fold": [...], "paragraph": {...}, "document": {...}}``:
    each block holds the pooled figures of every held-out line (``fazhi evaluate``'s
    ``scores`` without tables) and ``intervals``, 95% over ``args.bootstrap`` resamples of the
    documents. The fold models are scored as trained (no calibration); a line the parser kept
    out of its report's paragraphs is scored alone under the document block, where ``fazhi
    evaluate`` counts it a miss.
    """
    from fazhi.corpora.dataset import load

    split = load(args.data)["train"]
    doc_ids = [d for d, s in zip(split["doc_id"], split["label_source"]) if s.startswith(HUMAN)]
    folds = human_folds(doc_ids, args.folds, args.seed)
    out = Path(args.out)
    pooled: dict[str, list[dict]] = {"paragraph": [], "document": []}
    per_fold = []
    for k, held in enumerate(folds):
        fold_args = replace(args, out=str(out / f"fold-{k}"), folds=None)
        record = run(fold_args, held_out=held)
        lines = _held_out_lines(Path(fold_args.out), [r for r in split if r["doc_id"] in held])
        for block in pooled:
            pooled[block] += lines[block]
        per_fold.append({"fold": k, "documents": len(held), "train_examples": record["train_examples"],
                         **{block: scores(lines[block], tables=False) for block in lines}})
    result = {"folds": args.folds, "documents": sum(len(f) for f in folds), "model_type": args.model_type,
              "per_fold": per_fold,
              **{block: {**scores(lines, tables=False), "intervals": bootstrap(lines, args.bootstrap, seed=args.seed)}
                 for block, lines in pooled.items()}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "crossval.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    return result
