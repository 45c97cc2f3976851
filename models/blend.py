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

from typing import Sequence

import numpy as np

from fazhi.models.base import HeadingPaths, Prediction, check_inputs
from fazhi.models.bert import BertClassifier, predictions
from fazhi.models.calibration import Blend
from fazhi.models.onnx import RESCORE_MARGIN, probability_gap
from fazhi.models.tfidf import TfidfClassifier

BASELINE_DIR = "tfidf"  # the baseline's directory inside a blended model's directory
__all__ = ["BASELINE_DIR", "Blend", "BlendClassifier"]


class BlendClassifier:
    """The :class:`~fazhi.models.base.Classifier` of a blended model: categories from
    :class:`Blend` over both members, the shortcoming score and flag from the encoder."""

    def __init__(self, encoder: BertClassifier, baseline: TfidfClassifier, blend: Blend):
        self.encoder, self.baseline, self.blend = encoder, baseline, blend
        self.labels = encoder.labels
        self.name = f"{encoder.name}+tfidf"

    @property
    def backend(self) -> str:
        """The encoder's runtime (the baseline always runs in scikit-learn)."""
        return self.encoder.backend

    def member_probabilities(self, texts: Sequence[str], heading_paths: HeadingPaths = None
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Encoder category probabilities (n, K), baseline ones (n, K) in the encoder's label
        order, and the encoder's shortcoming probabilities (n,); all calibrated as stored."""
        paths = check_inputs(texts, heading_paths)
        encoder, shortcoming = self.encoder.probabilities(texts, paths)
        return encoder, self.baseline.category_probabilities(texts, paths, self.labels), shortcoming

    def predict(self, texts: Sequence[str], heading_paths: HeadingPaths = None) -> list[Prediction]:
        """One :class:`Prediction` per text (see :class:`~fazhi.models.base.Classifier`).

        On an int8 encoder the runtime re-scores in float32 the rows whose label int8 could
        change. Here the category is the blend's, so the test is the blend's gap, not the
        encoder's: an int8 error of d in an encoder probability moves the mixture by
        ``weight * d``, hence the margin ``weight * RESCORE_MARGIN``. Each row runs at most twice."""
        paths = check_inputs(texts, heading_paths)
        if not texts:
            return []
        baseline = self.baseline.category_probabilities(texts, paths, self.labels)
        calibration, margin = self.encoder.calibration, self.blend.weight * RESCORE_MARGIN

        def blend_near(idx: np.ndarray, cat: np.ndarray) -> np.ndarray:
            encoder = calibration.category_probabilities(cat)
            return probability_gap(self.blend.mix(encoder, baseline[idx])) < margin

        encoder, shortcoming = self.encoder.probabilities(texts, paths, category_near=blend_near)
        return predictions(self.blend.mix(encoder, baseline), shortcoming, self.labels,
                           calibration.shortcoming_threshold)
