"""Classifiers behind one interface (rules, TF-IDF baseline, BERT on torch or ONNX Runtime), the
digest, and the release adapter the package ships."""

from pathlib import Path

# the release model's LoRA adapter, heads and calibration (package data); `fazhi models merge`
# merges it into the base encoder
RELEASE_ADAPTER = Path(__file__).resolve().parent / "release"
