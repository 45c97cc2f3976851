"""Fit a model's blend with the TF-IDF baseline (:mod:`fazhi.models.blend`) on a human-labelled
dev set, and store it in the model directory with a copy of the baseline.

The inputs are those calibration uses (every gold body line alone and with its parsed
headings). Each weight of a grid gets the temperature of lowest negative log-likelihood; the
weight whose blend has the lowest NLL wins. NLL rather than macro-F1 because it moves smoothly
with the weight, where F1 jumps when one dev line changes side. The figures the blend is judged
by are cross-fitted, as calibration's are: two folds of documents, each scored with the blend
chosen on the other.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.metrics import f1_score

from fazhi.errors import FazhiError
from fazhi.models.bert import BertClassifier
from fazhi.models.blend import BASELINE_DIR, Blend, BlendClassifier
from fazhi.models.calibration import fit_temperature, nll
from fazhi.models.tfidf import TfidfClassifier
from fazhi.training.calibrate import check_dirs, dev_inputs, label_ids, store_fit, two_folds
from fazhi.training.evaluate import ece

WEIGHTS = np.round(np.linspace(0.0, 1.0, 21), 2)  # the encoder's share, in steps of 0.05


def choose_blend(encoder: np.ndarray, baseline: np.ndarray, labels: np.ndarray) -> Blend:
    """The blend of lowest NLL over :data:`WEIGHTS` for member probabilities (n, K), (n, K)
    and integer labels (n,); each weight with its own fitted temperature."""
    best: tuple[float, Blend] | None = None
    for weight in WEIGHTS:
        logits = Blend(float(weight)).log_mix(encoder, baseline)
        temperature = fit_temperature(logits, labels)
        loss = nll(logits, labels, temperature)
        if best is None or loss < best[0]:
            best = (loss, Blend(float(weight), temperature))
    return best[1]


def _figures(probs: np.ndarray, labels: np.ndarray, blocks: np.ndarray) -> dict:
    """Category macro-F1 (over the categories present) and ECE of probabilities (n, K) per block.
    The document block counts only the lines the parser keeps as paragraphs (``fazhi evaluate``
    also counts the others, as misses), hence its key ``document_parsed``."""
    out = {}
    for block, key in (("paragraph", "paragraph"), ("document", "document_parsed")):
        m = blocks == block
        if not m.any():
            continue
        pred = probs[m].argmax(-1)
        out[key] = {"category_macro_f1": round(float(f1_score(labels[m], pred, labels=np.unique(labels[m]),
                                                              average="macro", zero_division=0)), 4),
                    "category_ece": round(ece(probs[m].max(-1), pred == labels[m]), 4)}
    return out


def fit_blend(model_dir: str | Path, tfidf_dir: str | Path, gold_dir: str | Path,
              also: Sequence[str | Path] = ()) -> dict:
    """Choose the blend of the BERT model in ``model_dir`` with the TF-IDF model in ``tfidf_dir``
    on ``gold_dir``; copy the TF-IDF model to ``model_dir/tfidf``, store the blend in its
    fazhi.json (and in that of each directory in ``also``) and return the record: the blend,
    and the encoder alone against the blend, in-sample and cross-fitted, per block."""
    model_dir, tfidf_dir = Path(model_dir), Path(tfidf_dir)
    check_dirs(list(also))
    if not (tfidf_dir / "tfidf.joblib").is_file():
        raise FazhiError(str(tfidf_dir), "not a TF-IDF model directory (no tfidf.joblib)")
    encoder = BertClassifier.load(model_dir)
    records = dev_inputs(gold_dir)
    y = label_ids(records, encoder.labels, gold_dir)
    members = BlendClassifier(encoder, TfidfClassifier.load(tfidf_dir), Blend())
    enc, base, _ = members.member_probabilities([r["text"] for r in records], [r["heading_path"] for r in records])
    blocks = np.array([r["block"] for r in records])
    blend = Blend(**choose_blend(enc, base, y).to_dict())

    folds = two_folds(records)
    crossed = np.zeros_like(enc)
    for train, test in folds:
        crossed[test] = choose_blend(enc[train], base[train], y[train]).mix(enc[test], base[test])
    record = {"gold": str(gold_dir), "tfidf": str(tfidf_dir), "inputs": len(records), "blend": blend.to_dict(),
              "encoder_alone": _figures(enc, y, blocks), "in_sample": _figures(blend.mix(enc, base), y, blocks),
              "cross_fitted": _figures(crossed, y, blocks) if folds else None}
    if (model_dir / BASELINE_DIR).resolve() != tfidf_dir.resolve():
        shutil.copytree(tfidf_dir, model_dir / BASELINE_DIR, dirs_exist_ok=True)
    store_fit([model_dir, *also], blend=blend, blend_record=record)
    return record
