"""The encoder's category probabilities blended with the TF-IDF baseline's.

On real report pages the two models make different mistakes: the encoder reads phrasing it
has seen in few examples, the character n-grams hold on to area words ("行政处罚", "复议").
A weighted mean of their probabilities, re-tempered, beats either alone on the human-labelled
dev set (docs/experiments.md). The shortcoming head stays the encoder's own: it reads only the
paragraph's tokens, so a heading that names problems does not flag the achievements under it,
which a bag of n-grams over heading and text cannot promise.

Written by hand because scikit-learn's ``VotingClassifier`` needs estimators that share one
input; here one member reads tokens, the other n-grams of the same paragraph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from fazhi.models.base import HeadingPaths, Prediction, check_inputs
from fazhi.models.bert import BertClassifier, predictions, with_context
from fazhi.models.calibration import softmax
from fazhi.models.tfidf import TfidfClassifier

BASELINE_DIR = "tfidf"  # the baseline's directory inside a blended model's directory
_FLOOR = 1e-9  # keeps log() finite where both members give a category zero


@dataclass(frozen=True)
class Blend:
    """``weight`` is the encoder's share of the category probability (1: the encoder alone,
    0: the baseline alone); the mixture's log-probabilities are divided by ``temperature``."""

    weight: float = 1.0
    temperature: float = 1.0

    def __post_init__(self):
        if not 0.0 <= self.weight <= 1.0 or self.temperature <= 0:
            raise ValueError(f"blend weight must lie in [0, 1] and temperature be > 0, got {self}")

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}

    def log_mix(self, encoder: np.ndarray, baseline: np.ndarray) -> np.ndarray:
        """Log of the weighted mean of two (n, K) probability arrays, before the temperature."""
        return np.log(self.weight * encoder + (1 - self.weight) * baseline + _FLOOR)

    def mix(self, encoder: np.ndarray, baseline: np.ndarray) -> np.ndarray:
        """Blended category probabilities (n, K), rows summing to 1."""
        return softmax(self.log_mix(encoder, baseline) / self.temperature)


class BlendClassifier:
    """The :class:`~fazhi.models.base.Classifier` of a blended model: categories from
    :class:`Blend` over both members, the shortcoming score and flag from the encoder."""

    def __init__(self, encoder: BertClassifier, baseline: TfidfClassifier, blend: Blend):
        self.encoder, self.baseline, self.blend = encoder, baseline, blend
        self.labels = encoder.labels
        self.name = f"{encoder.name}+tfidf"

    @property
    def backend(self) -> str:
        return self.encoder.backend

    def member_probabilities(self, texts: Sequence[str], heading_paths: HeadingPaths = None
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Encoder category probabilities (n, K), baseline ones (n, K) in the encoder's label
        order, and the encoder's shortcoming probabilities (n,); all calibrated as stored."""
        paths = check_inputs(texts, heading_paths)
        cat, sc = self.encoder.logits([with_context(t, p) for t, p in zip(texts, paths)])
        encoder, shortcoming = self.encoder.calibration.probabilities(cat, sc)
        return encoder, self.baseline.category_probabilities(texts, paths, self.labels), shortcoming

    def predict(self, texts: Sequence[str], heading_paths: HeadingPaths = None) -> list[Prediction]:
        if not texts:
            check_inputs(texts, heading_paths)
            return []
        encoder, baseline, shortcoming = self.member_probabilities(texts, heading_paths)
        return predictions(self.blend.mix(encoder, baseline), shortcoming, self.labels,
                           self.encoder.calibration.shortcoming_threshold)
