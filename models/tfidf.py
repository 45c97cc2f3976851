"""Baseline: character n-gram TF-IDF + logistic regression (scikit-learn)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Sequence

import joblib
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from fazhi.errors import FazhiError
from fazhi.models.base import HeadingPaths, Prediction, check_inputs


def join_context(text: str, heading_path: Sequence[str] | None) -> str:
    """The text with its nearest headings in front, as the baseline reads it."""
    return (" / ".join(heading_path[-2:]) + " ||| " + text) if heading_path else text


class TfidfClassifier:
    """Two logistic regressions on one character 1–3-gram TF-IDF space."""

    name = "tfidf"

    def __init__(self, category_model=None, shortcoming_model=None, labels: list[str] | None = None):
        self.category_model = category_model
        self.shortcoming_model = shortcoming_model
        self.labels = labels or []

    def fit(self, texts: Sequence[str], categories: Sequence[str | None], shortcomings: Sequence[bool],
            heading_paths: HeadingPaths = None, drop_context: float = 0.5, seed: int = 13,
            sample_weight: Sequence[float] | None = None) -> "TfidfClassifier":
        """Fit on paragraphs; the heading context is dropped at random so that bare paragraphs work too.
        A paragraph whose category is None fits the shortcoming model alone; ``sample_weight``
        (one per paragraph, default 1) weighs each paragraph's loss."""
        rng = random.Random(seed)
        paths = check_inputs(texts, heading_paths)
        docs = [join_context(t, None if rng.random() < drop_context else p) for t, p in zip(texts, paths)]
        vec = dict(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True, max_features=200000)
        self.category_model = make_pipeline(TfidfVectorizer(**vec), LogisticRegression(
            C=10.0, max_iter=2000, class_weight="balanced", random_state=seed))
        weight = np.ones(len(docs)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        known = [i for i, c in enumerate(categories) if c is not None]
        self.category_model.fit([docs[i] for i in known], [categories[i] for i in known],
                                logisticregression__sample_weight=weight[known])
        self.shortcoming_model = make_pipeline(TfidfVectorizer(**vec), LogisticRegression(
            C=10.0, max_iter=2000, class_weight="balanced", random_state=seed))
        self.shortcoming_model.fit(docs, [bool(s) for s in shortcomings], logisticregression__sample_weight=weight)
        self.labels = list(self.category_model.classes_)
        return self

    def category_probabilities(self, texts: Sequence[str], heading_paths: HeadingPaths,
                               labels: Sequence[str]) -> np.ndarray:
        """Category probabilities (n, len(labels)) with columns in ``labels``' order; a label
        the model never saw in training gets 0."""
        docs = [join_context(t, p) for t, p in zip(texts, check_inputs(texts, heading_paths))]
        out = np.zeros((len(docs), len(labels)))
        if docs:
            probs = self.category_model.predict_proba(docs)
            column = {label: j for j, label in enumerate(self.labels)}
            for i, label in enumerate(labels):
                if label in column:
                    out[:, i] = probs[:, column[label]]
        return out

    def predict(self, texts: Sequence[str], heading_paths: HeadingPaths = None) -> list[Prediction]:
        """One :class:`Prediction` per text (see :class:`~fazhi.models.base.Classifier`)."""
        paths = check_inputs(texts, heading_paths)
        if not texts:
            return []
        cat = self.category_probabilities(texts, paths, self.labels)
        docs = [join_context(t, p) for t, p in zip(texts, paths)]
        sc_classes = list(self.shortcoming_model.classes_)
        sc = self.shortcoming_model.predict_proba(docs)[:, sc_classes.index(True)] if True in sc_classes else np.zeros(len(docs))
        out = []
        for row, s in zip(cat, sc):
            scores = {label: round(float(p), 4) for label, p in zip(self.labels, row)}
            out.append(Prediction(self.labels[int(np.argmax(row))], scores, bool(s >= 0.5), round(float(s), 4)))
        return out

    def save(self, out_dir: str | Path, card: dict | None = None) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        joblib.dump({"category": self.category_model, "shortcoming": self.shortcoming_model, "labels": self.labels},
                    out / "tfidf.joblib")
        (out / "fazhi.json").write_text(json.dumps({"type": "tfidf", **(card or {})}, ensure_ascii=False, indent=2))
        return out

    @classmethod
    def load(cls, path: str | Path) -> "TfidfClassifier":
        try:
            blob = joblib.load(Path(path) / "tfidf.joblib")
        except Exception as err:
            raise FazhiError(str(path), f"cannot load the TF-IDF model: {err}") from None
        return cls(blob["category"], blob["shortcoming"], blob["labels"])
