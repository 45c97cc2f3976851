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


def load_classifier(spec: str | Path | None = None, backend: str | None = None, blend: bool = True) -> Classifier:
    """``rules``, ``tfidf``, or a model directory (default: the release model). BERT models run
    on ``backend`` (default ``$FAZHI_BACKEND``, ``auto``: ONNX where exported, else torch, as
    :meth:`~fazhi.models.bert.BertClassifier.load` says); one
    whose fazhi.json holds a blend comes blended with its TF-IDF baseline, unless ``blend`` is
    False (the encoder alone, as ``transformers.pipeline`` runs it)."""
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

        encoder = BertClassifier.load(path, backend or settings().backend)
        if not blend or not encoder.meta.blend:
            return encoder
        from fazhi.models.blend import BASELINE_DIR, BlendClassifier
        from fazhi.models.tfidf import TfidfClassifier

        baseline = path / BASELINE_DIR
        if not (baseline / "tfidf.joblib").is_file():
            raise FazhiError(str(path), f"blends its categories with a TF-IDF model but has no {BASELINE_DIR}/"
                                        "tfidf.joblib: copy in the TF-IDF model the blend was fitted with "
                                        "(`fazhi models merge --tfidf DIR`; `make setup` for the release)")
        return BlendClassifier(encoder, TfidfClassifier.load(baseline), encoder.meta.blend)
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
