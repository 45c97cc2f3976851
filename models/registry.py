"""Resolve a model name or directory to a classifier."""

from __future__ import annotations

import os
from pathlib import Path

from fazhi.errors import FazhiError

ROOT = Path(__file__).resolve().parents[1]
RELEASE_DIR = ROOT / "build" / "release-model"
TFIDF_DIR = ROOT / "build" / "tfidf"


def default_model_dir() -> Path:
    """``$FAZHI_MODEL`` or the release model built by ``make setup``."""
    return Path(os.environ.get("FAZHI_MODEL", RELEASE_DIR))


def resolve(spec: str | Path | None):
    from models.rules import RulesClassifier

    if spec in (None, "", "bert"):
        spec = default_model_dir()
    if str(spec) == "rules":
        return RulesClassifier()
    if str(spec) == "tfidf":
        spec = TFIDF_DIR
    path = Path(spec)
    if not path.exists():
        hint = " (run `make setup` to build the release model)" if path == default_model_dir() else ""
        raise FazhiError(str(path), f"model directory not found{hint}")
    if (path / "tfidf.joblib").is_file():
        from models.tfidf import TfidfClassifier

        return TfidfClassifier.load(path)
    if (path / "config.json").is_file():
        from models.bert import BertClassifier

        return BertClassifier.load(path)
    raise FazhiError(str(path), "not a model directory (no config.json or tfidf.joblib)")
