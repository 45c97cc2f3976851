"""A release of two encoders: categories from one model, shortcomings from another.

Each is the better of its task on the validation split; a paragraph costs two encoder
passes. A model directory becomes a pair when it holds a ``shortcoming/`` model directory
of its own: the outer model gives the categories (and is what
``pipeline("text-classification")`` loads), the inner one the shortcoming flags.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from models.base import Classifier, HeadingPaths, Prediction

SHORTCOMING_DIR = "shortcoming"


def shortcoming_dir(model_dir: str | Path) -> Path | None:
    """The inner shortcoming model of ``model_dir``, or None where it is a single model."""
    inner = Path(model_dir) / SHORTCOMING_DIR
    return inner if (inner / "config.json").is_file() else None


class PairedClassifier:
    """Predictions whose category and scores come from ``category`` and whose shortcoming
    flag and score come from ``shortcoming``; both see the same texts and heading paths."""

    def __init__(self, category: Classifier, shortcoming: Classifier):
        self.category, self.shortcoming = category, shortcoming
        self.name, self.labels = category.name, category.labels
        backends = [getattr(m, "backend", m.name) for m in (category, shortcoming)]
        self.backend = backends[0] if backends[0] == backends[1] else " + ".join(backends)
        self.backend += ", two encoders"

    def predict(self, texts: Sequence[str], heading_paths: HeadingPaths = None) -> list[Prediction]:
        cats = self.category.predict(texts, heading_paths)
        flags = self.shortcoming.predict(texts, heading_paths)
        return [replace(c, shortcoming=f.shortcoming, shortcoming_score=f.shortcoming_score)
                for c, f in zip(cats, flags)]
