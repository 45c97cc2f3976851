"""The labelling functions themselves, used as a classifier."""

from __future__ import annotations

from typing import Sequence

from fazhi.corpora.labelling import context_for, label
from fazhi.corpora.taxonomy import Taxonomy, load_taxonomy
from fazhi.models.base import HeadingPaths, Prediction, check_inputs


class RulesClassifier:
    """Cue-based labelling functions; the confidence of the winning vote becomes its probability."""

    name = "rules"

    def __init__(self, taxonomy: Taxonomy | None = None):
        self.taxonomy = taxonomy or load_taxonomy()
        self.labels = self.taxonomy.labels

    def predict(self, texts: Sequence[str], heading_paths: HeadingPaths = None) -> list[Prediction]:
        out = []
        rest = max(1, len(self.labels) - 1)
        for text, path in zip(texts, check_inputs(texts, heading_paths)):
            ctx = context_for(text, path)
            lab = label(ctx, self.taxonomy)
            p = lab.category_confidence
            scores = {c: round(p if c == lab.category else (1 - p) / rest, 4) for c in self.labels}
            sc = lab.shortcoming_confidence if lab.shortcoming else 1 - lab.shortcoming_confidence
            out.append(Prediction(lab.category, scores, lab.shortcoming, round(sc, 4)))
        return out
