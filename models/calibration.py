"""Calibrated scores: one temperature per head and the shortcoming threshold, fitted on a
human-labelled dev set and stored in the model directory (``fazhi.json`` → ``calibration``);
and the :class:`Blend` of a model's category probabilities with the TF-IDF baseline's
(``fazhi.json`` → ``blend``, used by :mod:`fazhi.models.blend`).

A fine-tuned encoder says 0.99 on its wrong answers as on its right ones; dividing its
logits by a temperature fitted to the dev set's negative log-likelihood makes 0.8 mean
"right four times in five" without moving any category (the argmax of ``z / T`` is the
argmax of ``z``). The shortcoming threshold is then chosen on the calibrated probability.
Both the torch and the ONNX paths turn logits into probabilities here, so they agree.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.optimize import minimize_scalar

LOG_T_BOUNDS = (-3.0, 3.0)  # temperatures between 0.05 and 20


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax of an (n, K) array."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Calibration:
    """``category_temperature`` and ``shortcoming_temperature`` divide each head's logits;
    a paragraph is a shortcoming when its calibrated probability is ≥ ``shortcoming_threshold``.
    The identity (1, 1, 0.5) is what an uncalibrated model uses."""

    category_temperature: float = 1.0
    shortcoming_temperature: float = 1.0
    shortcoming_threshold: float = 0.5

    def to_dict(self) -> dict:
        return {k: round(v, 4) for k, v in asdict(self).items()}

    def probabilities(self, cat_logits: np.ndarray, sc_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Category logits (n, K) and shortcoming logits (n, 2) → category probabilities (n, K)
        and shortcoming probabilities (n,)."""
        return self.category_probabilities(cat_logits), softmax(sc_logits / self.shortcoming_temperature)[:, 1]

    def category_probabilities(self, cat_logits: np.ndarray) -> np.ndarray:
        """Category logits (n, K) → calibrated category probabilities (n, K)."""
        return softmax(cat_logits / self.category_temperature)

    def raw_threshold(self) -> float:
        """The threshold as an uncalibrated shortcoming probability (for re-scoring near it)."""
        t = min(max(self.shortcoming_threshold, 1e-6), 1 - 1e-6)
        return float(1 / (1 + np.exp(-self.shortcoming_temperature * np.log(t / (1 - t)))))


_FLOOR = 1e-9  # keeps log() finite where both members of a blend give a category zero


@dataclass(frozen=True)
class Blend:
    """``weight`` is the encoder's share of the category probability (1: the encoder alone,
    0: the baseline alone); the mixture's log-probabilities are divided by ``temperature``."""

    weight: float = 1.0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0 or self.temperature <= 0:
            raise ValueError(f"blend weight must lie in [0, 1] and temperature be > 0, got {self}")

    def to_dict(self) -> dict[str, float]:
        """The fields rounded to 4 places, as ``fazhi.json`` stores them."""
        return {k: round(v, 4) for k, v in asdict(self).items()}

    def log_mix(self, encoder: np.ndarray, baseline: np.ndarray) -> np.ndarray:
        """Log of the weighted mean of two (n, K) probability arrays, before the temperature."""
        return np.log(self.weight * encoder + (1 - self.weight) * baseline + _FLOOR)

    def mix(self, encoder: np.ndarray, baseline: np.ndarray) -> np.ndarray:
        """Blended category probabilities (n, K), rows summing to 1."""
        return softmax(self.log_mix(encoder, baseline) / self.temperature)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of integer ``labels`` (n,) under ``softmax(logits / T)`` (n, K)."""
    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises :func:`nll` on (logits (n, K), labels (n,))."""
    res = minimize_scalar(lambda log_t: nll(logits, labels, float(np.exp(log_t))), bounds=LOG_T_BOUNDS,
                          method="bounded")
    return float(np.exp(res.x))


def best_threshold(probs: np.ndarray, positive: np.ndarray) -> float:
    """The shortcoming threshold with the highest F1 on (probs (n,), positive (n,)); of the
    thresholds that tie, the middle of the range between the scores they separate, so that
    the choice does not sit on one dev line's score."""
    order = np.unique(probs)
    if not positive.any() or len(order) < 2:
        return 0.5
    cuts = (order[:-1] + order[1:]) / 2

    def f1(t: float) -> float:
        pred = probs >= t
        tp = float((pred & positive).sum())
        return 2 * tp / max(1.0, pred.sum() + positive.sum())

    scores = np.array([f1(t) for t in cuts])
    best = np.flatnonzero(scores == scores.max())
    return float((cuts[best[0]] + cuts[best[-1]]) / 2) if best[-1] - best[0] == len(best) - 1 \
        else float(cuts[best[len(best) // 2]])


def fit(cat_logits: np.ndarray, cat_labels: np.ndarray, sc_logits: np.ndarray,
        sc_labels: np.ndarray) -> Calibration:
    """Temperatures per head by NLL, then the threshold on the calibrated shortcoming probability."""
    temperatures = Calibration(fit_temperature(cat_logits, cat_labels),
                               fit_temperature(sc_logits, sc_labels.astype(int)))
    _, probs = temperatures.probabilities(cat_logits, sc_logits)
    return replace(temperatures, shortcoming_threshold=best_threshold(probs, sc_labels.astype(bool)))


def fold_of(group: str, folds: int = 2, seed: int = 13) -> int:
    """A stable fold for a document name (documents never straddle folds)."""
    return int(hashlib.sha1(f"{seed}:{group}".encode()).hexdigest()[:8], 16) % folds
