"""Resolve a model name or directory to a classifier: the one place models are loaded by name."""

from __future__ import annotations

from pathlib import Path

from fazhi.errors import FazhiError
from fazhi.models.base import Classifier
from fazhi.settings import RELEASE_MODEL, settings


def model_dir(spec: str | Path | None = None) -> Path | None:
    """The directory a model name stands for: ``rules`` has none (None); ``tfidf`` is the trained
    baseline; None or ``bert`` is ``$FAZHI_MODEL`` or the release model; anything else is a path."""
    if spec in (None, "", "bert"):
        return settings().model_path()
    return settings(model=str(spec)).model_path()


def load_classifier(spec: str | Path | None = None, backend: str | None = None) -> Classifier:
    """``rules``, ``tfidf``, or a model directory (default: the release model). BERT models run
    on ``backend`` (default ``$FAZHI_BACKEND``, ``auto``: ONNX where exported, else torch)."""
    path = model_dir(spec)
    if path is None:
        from fazhi.models.rules import RulesClassifier

        return RulesClassifier()
    if not path.exists():
        hint = " (run `make setup` to build the release model)" if path == RELEASE_MODEL else ""
        raise FazhiError(str(path), f"model directory not found{hint}")
    if (path / "tfidf.joblib").is_file():
        from fazhi.models.tfidf import TfidfClassifier

        return TfidfClassifier.load(path)
    if (path / "config.json").is_file():
        from fazhi.models.bert import BertClassifier

        return BertClassifier.load(path, backend or settings().backend)
    raise FazhiError(str(path), "not a model directory (no config.json or tfidf.joblib)")


def model_card(spec: str | Path | None) -> tuple[dict, dict]:
    """``(metrics, front_matter)`` of a model directory's fazhi.json and README.md (empty when absent)."""
    import yaml

    from fazhi.models.meta import ModelMeta

    path = model_dir(spec)
    if path is None:
        return {}, {}
    card = {}
    if (path / "README.md").is_file():
        text = (path / "README.md").read_text(encoding="utf-8")
        if text.startswith("---"):
            card = yaml.safe_load(text.split("---", 2)[1]) or {}
    return ModelMeta.read(path).metrics, card
