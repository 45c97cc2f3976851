"""Fit a model's calibration (:mod:`fazhi.models.calibration`) on a human-labelled dev set.

The inputs are every gold body line as both evaluation blocks send it: alone, and with the
heading path its parsed report gives it. The stored calibration is fitted on all of them;
the figures it is judged by are cross-fitted — the documents fall into two folds, each
fold scored with the temperatures and threshold fitted on the other — so that the
threshold's choice is not also its test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from fazhi.corpora.gold import align, load_gold
from fazhi.errors import FazhiError
from fazhi.models.base import document_inputs
from fazhi.models.bert import BertClassifier, with_context
from fazhi.models.calibration import Calibration, fit, fold_of
from fazhi.models.meta import ModelMeta
from fazhi.training.evaluate import ece


def dev_inputs(gold_dir: str | Path) -> list[dict]:
    """One record per (gold body line, block): its text and heading path (``[]`` alone), the
    encoder's input made of them, labels, document and block."""
    records = []
    for name, rows in load_gold(gold_dir).items():
        doc, paragraphs = align(rows)
        _, paths = document_inputs(doc)
        path_of = dict(zip((p.id for p in doc.paragraphs), paths))
        for row, para in zip(rows, paragraphs):
            if row["kind"] != "body":
                continue
            base = {"doc": name, "category": row["category"], "shortcoming": bool(row["shortcoming"])}
            records.append({**base, "block": "paragraph", "text": row["text"], "heading_path": [],
                            "input": row["text"]})
            if para is not None:
                path = path_of[para.id]
                records.append({**base, "block": "document", "text": para.text, "heading_path": path,
                                "input": with_context(para.text, path)})
    if not records:
        raise FazhiError(str(gold_dir), "no body lines to calibrate on")
    return records


def _figures(cat_probs: np.ndarray, sc_probs: np.ndarray, threshold: float | np.ndarray, yc: np.ndarray,
             ys: np.ndarray) -> dict:
    """ECE of both heads and shortcoming F1 of probabilities (n, K) and (n,) against labels (n,);
    ``threshold`` is one value or one per row."""
    return {"category_ece": round(ece(cat_probs.max(-1), cat_probs.argmax(-1) == yc), 4),
            "shortcoming_ece": round(ece(sc_probs, ys), 4),
            "shortcoming_f1": round(float(f1_score(ys, sc_probs >= threshold, zero_division=0)), 4)}


def check_dirs(directories: list[str | Path]) -> None:
    """FazhiError for the first of ``directories`` (where a fit is also stored) that does not exist."""
    for directory in directories:
        if not Path(directory).is_dir():
            raise FazhiError(str(directory), "no such directory to store the fit in")


def label_ids(records: list[dict], labels: list[str], gold_dir: str | Path) -> np.ndarray:
    """The records' categories as indices into the model's ``labels`` (n,); FazhiError naming
    the gold directory when it holds a category the model does not know."""
    label_id = {l: i for i, l in enumerate(labels)}
    unknown = sorted({r["category"] for r in records} - set(label_id))
    if unknown:
        raise FazhiError(str(gold_dir), f"categories the model does not know: {unknown}")
    return np.array([label_id[r["category"]] for r in records])


def two_folds(records: list[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) boolean masks (n,) of the two document folds, or [] when one fold is empty."""
    folds = np.array([fold_of(r["doc"]) for r in records])
    if not (folds == 0).any() or not (folds == 1).any():
        return []
    return [(folds != k, folds == k) for k in (0, 1)]


def store_fit(directories: list[str | Path], **fields) -> None:
    """Update ``fields`` of the fazhi.json in each directory."""
    for directory in directories:
        ModelMeta.read(directory).model_copy(update=fields).write(directory)


def calibrate(model_dir: str | Path, gold_dir: str | Path, also: list[str | Path] = ()) -> dict:
    """Fit the calibration of ``model_dir`` on ``gold_dir``, store it in its fazhi.json (and
    in that of each directory in ``also``, e.g. the adapter the model is merged from) and
    return the record: the calibration, and before/after figures (after: cross-fitted).

    A blend stored with the model was fitted on the old probabilities: it is dropped, with a
    notice, for `fazhi models blend` to fit again."""
    check_dirs(also)
    clf = BertClassifier.load(model_dir)
    records = dev_inputs(gold_dir)
    cat, sc = clf.logits([r["input"] for r in records])
    yc = label_ids(records, clf.labels, gold_dir)
    ys = np.array([r["shortcoming"] for r in records])
    cal = fit(cat, yc, sc, ys)

    folds = two_folds(records)
    probs_c, probs_s, thresholds = np.zeros_like(cat), np.zeros(len(records)), np.zeros(len(records))
    for train, test in folds:
        part = fit(cat[train], yc[train], sc[train], ys[train])
        probs_c[test], probs_s[test] = part.probabilities(cat[test], sc[test])
        thresholds[test] = part.shortcoming_threshold
    record = {"gold": str(gold_dir), "inputs": len(records), "calibration": cal.to_dict(),
              **{name: _figures(*c.probabilities(cat, sc), c.shortcoming_threshold, yc, ys)
                 for name, c in (("uncalibrated", Calibration()), ("in_sample", cal))},
              "cross_fitted": _figures(probs_c, probs_s, thresholds, yc, ys) if folds else None}
    if clf.meta.blend is not None:
        sys.stderr.write(f"fazhi: notice: {model_dir}: the blend with TF-IDF was fitted on the old calibration "
                         "and is dropped; fit it again with `fazhi models blend`\n")
    store_fit([model_dir, *also], calibration=cal.to_dict(), calibration_record=record, blend=None)
    return record
