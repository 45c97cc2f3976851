"""Resolve a model name or directory to a classifier."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fazhi.errors import FazhiError

ROOT = Path(__file__).resolve().parents[1]
RELEASE_DIR = ROOT / "build" / "release-model"
TFIDF_DIR = ROOT / "build" / "tfidf"


def default_model_dir() -> Path:
    """``$FAZHI_MODEL`` or the release model built by ``make setup``."""
    return Path(os.environ.get("FAZHI_MODEL", RELEASE_DIR))


def model_dir(spec: str | Path | None) -> Path | None:
    """The directory a model name stands for (None for ``rules``, which has none)."""
    if spec in (None, "", "bert"):
        return default_model_dir()
    if str(spec) == "rules":
        return None
    return TFIDF_DIR if str(spec) == "tfidf" else Path(spec)


def model_card(spec: str | Path | None) -> tuple[dict, dict]:
    """``(metrics, front_matter)`` of a model directory's fazhi.json and README.md (empty when absent)."""
    import json

    import yaml

    path = model_dir(spec)
    metrics, card = {}, {}
    if path and (path / "fazhi.json").is_file():
        metrics = json.loads((path / "fazhi.json").read_text(encoding="utf-8")).get("metrics", {})
    if path and (path / "README.md").is_file():
        text = (path / "README.md").read_text(encoding="utf-8")
        if text.startswith("---"):
            card = yaml.safe_load(text.split("---", 2)[1]) or {}
    return metrics, card


def resolve(spec: str | Path | None):
    from fazhi.models.rules import RulesClassifier

    path = model_dir(spec)
    if path is None:
        return RulesClassifier()
    if not path.exists():
        hint = " (run `make setup` to build the release model)" if path == default_model_dir() else ""
        raise FazhiError(str(path), f"model directory not found{hint}")
    if (path / "tfidf.joblib").is_file():
        from fazhi.models.tfidf import TfidfClassifier

        return TfidfClassifier.load(path)
    if (path / "config.json").is_file():
        return _bert(path)
    raise FazhiError(str(path), "not a model directory (no config.json or tfidf.joblib)")


def _bert(path: Path):
    """A saved BERT model on the backend ``$FAZHI_BACKEND`` asks for (auto: ONNX where exported)."""
    from fazhi.models.bert import BertClassifier

    backend = os.environ.get("FAZHI_BACKEND", "auto")
    if backend not in ("auto", "onnx", "torch"):
        raise FazhiError("FAZHI_BACKEND", f"expected auto, onnx or torch, got {backend!r}")
    if backend != "torch":
        from fazhi.models.onnx import load_fast

        fast, why = load_fast(path)
        if fast is not None:
            return fast
        if backend == "onnx":
            raise FazhiError(str(path), why)
        sys.stderr.write(f"fazhi: notice: {why}; using torch\n")
    return BertClassifier.load(path)
