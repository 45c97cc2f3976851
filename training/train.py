"""Fine-tune a Hugging Face encoder with a category head and a shortcoming head, on ``transformers.Trainer``.

As in the library's ``run_classification.py``: the options are one dataclass
(:class:`TrainArgs`, which is also the ``fazhi train`` command line), the loop is
``Trainer``'s, every output goes to one directory. What is ours: the two-head model
(:class:`models.bert.TwoHeads`), the loss (class weights, label confidence, extra weight on
human labels, documents that train the shortcoming head alone), the outline context dropped
at random so that bare paragraphs work too, and selection on the validation split (a
human-labelled dev set where the corpus has one) with early stopping and a time budget.
"""

from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score, f1_score
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

from fazhi.errors import FazhiError
from fazhi.models.meta import META_FILE, ModelMeta
from fazhi.models.bert import (BertClassifier, ShortcomingHead, TorchRuntime, TwoHeads, context_sep_id, load_shortcoming_head,
                         save_shortcoming_head, with_context)

LORA_TARGETS = r".*encoder.*\.(query|key|value|dense)$"
HUMAN = "human"  # label_source prefix of human labels (gold-format sources)


@dataclass
class TrainArgs:
    """Options of ``fazhi train`` (each field is a ``--flag``)."""

    data: str = field(metadata={"help": "Corpus directory from `fazhi corpus build`"})
    out: str = field(metadata={"help": "Output model directory"})
    base_model: str | None = field(default=None, metadata={
        "help": "Any local Hugging Face BERT/RoBERTa/XLM-R checkpoint (needed for bert)"})
    model_type: str = field(default="bert", metadata={"help": "bert or tfidf", "choices": ["bert", "tfidf"]})
    epochs: int = field(default=4, metadata={"help": "Passes over the training split"})
    batch_size: int = 32
    lr: float = field(default=3e-4, metadata={"help": "Learning rate (3e-4 suits LoRA, 3e-5 full fine-tuning)"})
    max_length: int = field(default=192, metadata={"help": "Tokens per input"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank; 0 fine-tunes every weight"})
    init_adapter: str | None = field(default=None, metadata={
        "help": "Continue from this LoRA adapter and heads (e.g. models/release) instead of fresh ones"})
    drop_context: float = field(default=0.5, metadata={"help": "Share of training inputs sent without their headings"})
    context_swap: float = field(default=0.0, metadata={
        "help": "Share of body rows trained once more, for the shortcoming head alone, under the headings of a row "
                "with the other shortcoming label: the flag is the paragraph's own, never its headings'"})
    human_weight: float = field(default=1.0, metadata={
        "help": "Loss weight of rows with human labels (label_source human:…) relative to silver rows"})
    patience: int = field(default=2, metadata={"help": "Epochs without a better validation score before stopping"})
    seed: int = 13
    time_budget: float | None = field(default=None, metadata={
        "help": "Seconds of training, then evaluate once more and stop"})
    max_examples: int | None = field(default=None, metadata={"help": "Train on a random subset of this size"})
    silver_examples: int | None = field(default=None, metadata={
        "help": "Keep a random subset of this many silver rows; human rows are all kept"})
    exclude_sources: str | None = field(default=None, metadata={
        "help": "Leave out rows whose label_source starts so (e.g. synthetic)"})
    include_sources: str | None = field(default=None, metadata={
        "help": "Keep only rows whose label_source starts so (e.g. human)"})
    shortcoming_only: str | None = field(default=None, metadata={
        "help": "Rows of documents whose doc_id starts so train the shortcoming head alone"})
    folds: int | None = field(default=None, metadata={
        "help": "Cross-validate instead: train this many models, each without a share of the human documents, "
                "score each on the documents it did not see, write crossval.json to --out"})
    bootstrap: int = field(default=1000, metadata={
        "help": "With --folds: resamples of the held-out documents for the 95% intervals"})
    progress: bool = field(default=True, metadata={"help": "Progress bars"})

    def __post_init__(self) -> None:
        if self.model_type not in ("bert", "tfidf"):
            raise FazhiError("--model-type", f"expected bert or tfidf, got {self.model_type!r}")
        if self.model_type == "bert" and not self.base_model:
            raise FazhiError("--base-model", "required for --model-type bert")
        for name in ("epochs", "batch_size", "max_length", "bootstrap"):
            if getattr(self, name) < 1:
                raise FazhiError(f"--{name.replace('_', '-')}", f"must be positive, got {getattr(self, name)}")
        for name in ("drop_context", "context_swap"):
            if not 0 <= getattr(self, name) <= 1:
                raise FazhiError(f"--{name.replace('_', '-')}", f"expected a share in [0, 1], got {getattr(self, name)}")
        if self.folds is not None and self.folds < 2:
            raise FazhiError("--folds", f"expected 2 folds or more, got {self.folds}")
        if self.human_weight <= 0:
            raise FazhiError("--human-weight", f"must be positive, got {self.human_weight}")


def _weights(values: list, labels: list) -> torch.Tensor:
    """Inverse square-root class frequency, normalised to mean 1."""
    counts = np.array([max(1, values.count(l)) for l in labels], dtype=float)
    w = (counts.sum() / counts) ** 0.5
    return torch.tensor(w / w.mean(), dtype=torch.float)


def _shortcoming_only(row: dict, prefix: str | None) -> bool:
    """Whether the row's document trains the shortcoming head alone (its doc_id starts with ``prefix``)."""
    return bool(prefix) and row["doc_id"].startswith(prefix)


def training_rows(args: TrainArgs, split, held_out: frozenset[str] | set[str] = frozenset()) -> list[dict]:
    """The rows of a corpus split that ``args`` keeps (sources, subset), less those of the
    documents in ``held_out`` (doc_ids)."""
    rows = [r for r in split if r["doc_id"] not in held_out
            and not (args.exclude_sources and r["label_source"].startswith(args.exclude_sources))
            and (not args.include_sources or r["label_source"].startswith(args.include_sources))]
    if args.silver_examples is not None:
        silver = [r for r in rows if not r["label_source"].startswith(HUMAN)]
        keep = set(map(id, random.Random(args.seed).sample(silver, min(len(silver), args.silver_examples))))
        rows = [r for r in rows if r["label_source"].startswith(HUMAN) or id(r) in keep]
    if args.max_examples:
        rows = random.Random(args.seed).sample(rows, min(len(rows), args.max_examples))
    if not rows:
        raise FazhiError(args.data, "no training examples left")
    return rows


def row_weight(row: dict, args: TrainArgs) -> float:
    """A row's loss weight: its label confidence, times ``human_weight`` for human labels."""
    return float(row["confidence"]) * (args.human_weight if row["label_source"].startswith(HUMAN) else 1.0)


def swapped_contexts(rows: list[dict], share: float, seed: int) -> list[dict]:
    """Copies of a ``share`` of the body rows, each under the heading path of a random row with
    the other shortcoming label, marked ``swapped`` (they train the shortcoming head alone).

    Paragraphs under "存在的问题" mostly state problems, so a model can learn to flag whatever
    stands under such a heading; the same paragraph under the headings of the other label,
    with its own label, teaches it that the flag lies in the paragraph's words.
    """
    rng = random.Random(seed)
    paths = {flag: [r["heading_path"] for r in rows if r["heading_path"] and bool(r["shortcoming"]) == flag]
             for flag in (False, True)}
    return [{**r, "heading_path": rng.choice(paths[not r["shortcoming"]]), "swapped": True}
            for r in rows if r["kind"] == "body" and paths[not r["shortcoming"]] and rng.random() < share]


def load_base(base_model: str, labels: list[str]):
    """The base checkpoint as a sequence-classification model with ``labels``, and its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = Path(base_model)
    if not (path / "config.json").is_file():
        raise FazhiError(base_model, "base model directory not found or has no config.json")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
        dtype=torch.float32)
    return model, tokenizer


def _continue_from(model, adapter_dir: str, labels: list[str]):
    """``model`` with the LoRA adapter of ``adapter_dir`` loaded trainable, and that adapter's shortcoming head."""
    from peft import PeftModel

    if not (Path(adapter_dir) / "adapter_config.json").is_file() or not (Path(adapter_dir) / META_FILE).is_file():
        raise FazhiError(adapter_dir, f"not a fazhi LoRA adapter directory (adapter_config.json, {META_FILE})")
    if ModelMeta.read(adapter_dir).labels != labels:
        raise FazhiError(adapter_dir, "the adapter's labels are not the label scheme's")
    return PeftModel.from_pretrained(model, adapter_dir, is_trainable=True), load_shortcoming_head(adapter_dir)


class Collator:
    """Tokenizes a batch of rows; each row's headings are dropped with its ``drop`` share
    (the training rate, or 0/1 for the two halves of the validation set)."""

    def __init__(self, tokenizer, max_length: int, seed: int):
        self.tokenizer, self.max_length, self.rng = tokenizer, max_length, random.Random(seed)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        texts = [with_context(r["text"], None if self.rng.random() < r["drop"] else r["heading_path"]) for r in rows]
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        batch = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        batch["category_labels"] = torch.tensor([r["category_id"] for r in rows])
        batch["shortcoming_labels"] = torch.tensor([int(r["shortcoming"]) for r in rows])
        batch["category_weight"] = torch.tensor([r["category_weight"] for r in rows], dtype=torch.float)
        batch["weight"] = torch.tensor([r["weight"] for r in rows], dtype=torch.float)
        return batch


class TwoHeadTrainer(Trainer):
    """``Trainer`` with the two-head loss: class-weighted cross-entropy per head, each row
    weighted by its label confidence (and human weight); rows of shortcoming-only documents
    add nothing to the category loss."""

    def __init__(self, *args, category_class_weight: torch.Tensor, shortcoming_class_weight: torch.Tensor, **kwargs):
        super().__init__(*args, **kwargs)
        self.cat_loss = nn.CrossEntropyLoss(weight=category_class_weight, reduction="none")
        self.sc_loss = nn.CrossEntropyLoss(weight=shortcoming_class_weight, reduction="none")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        yc, ys = inputs.pop("category_labels"), inputs.pop("shortcoming_labels")
        wc, w = inputs.pop("category_weight"), inputs.pop("weight")
        cat, sc = model(**inputs)
        self.cat_loss.to(cat.device), self.sc_loss.to(sc.device)
        loss = ((self.cat_loss(cat, yc) * wc + self.sc_loss(sc, ys)) * w).mean()
        return (loss, {"category_logits": cat, "shortcoming_logits": sc}) if return_outputs else loss


class KeepBest(TrainerCallback):
    """Early stopping that keeps the best weights in memory.

    Hand-written because the library's ``EarlyStoppingCallback`` needs
    ``load_best_model_at_end``, i.e. a full checkpoint of the wrapped (LoRA) model on disk at
    every evaluation, to keep what a copy of the trainable state does here.
    """

    def __init__(self, model: nn.Module, patience: int, metric: str = "eval_score"):
        self.model, self.patience, self.metric = model, patience, metric
        self.best, self.best_state, self.bad, self.history = -1.0, None, 0, []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.history and self.history[-1]["step"] == state.global_step:
            return  # the time budget's evaluation, repeated by the epoch's end
        score = metrics[self.metric]
        self.history.append({"epoch": round(state.epoch or 0, 2), "step": state.global_step,
                             **{k.removeprefix("eval_"): round(v, 4) for k, v in metrics.items()
                                if k.startswith("eval_") and not k.endswith(("_per_second", "runtime"))}})
        if score > self.best:
            self.best, self.bad = score, 0
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
        else:
            self.bad += 1
            control.should_training_stop = control.should_training_stop or self.bad >= self.patience


class TimeBudget(TrainerCallback):
    """Stops training after ``seconds`` of it, with one last evaluation."""

    def __init__(self, seconds: float | None):
        self.seconds, self.start = seconds, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.seconds and time.perf_counter() - self.start > self.seconds:
            control.should_training_stop = control.should_evaluate = True


def selection_metrics(labels: list[str]):
    """``compute_metrics`` for the validation set, whose first half is sent with its headings
    and second half without: category macro-F1 and shortcoming average precision (the
    threshold is chosen later, at calibration) per half; ``score`` is their mean."""

    def compute(pred) -> dict[str, float]:
        cat, sc = pred.predictions
        yc, ys = pred.label_ids
        half = len(yc) // 2
        out = {}
        for mode, part in (("with_context", slice(0, half)), ("alone", slice(half, None))):
            out[f"{mode}_category_macro_f1"] = float(f1_score(yc[part], cat[part].argmax(-1), average="macro",
                                                              labels=sorted(set(yc[part].tolist())), zero_division=0))
            out[f"{mode}_shortcoming_ap"] = float(average_precision_score(ys[part], sc[part][:, 1])) \
                if ys[part].any() else 0.0
        out["score"] = float(np.mean(list(out.values())))
        return out

    return compute


def train(args: TrainArgs, held_out: frozenset[str] | set[str] = frozenset()) -> dict:
    """Train on the train split less the documents in ``held_out``, keep the best evaluation on
    validation, save to ``args.out``; return the training record."""
    from datasets import Dataset, concatenate_datasets

    from fazhi.corpora.dataset import load
    from fazhi.corpora.taxonomy import load_taxonomy

    dd = load(args.data)
    rows = training_rows(args, dd["train"], held_out)
    val = [r for r in dd["validation"] if r["kind"] == "body"] or list(dd["validation"]) \
        or rows[: max(1, len(rows) // 10)]
    labels = load_taxonomy().labels
    label_id = {l: i for i, l in enumerate(labels)}
    torch.manual_seed(args.seed)
    model, tokenizer = load_base(args.base_model, labels)
    shortcoming = ShortcomingHead(model.config.hidden_size)
    if args.init_adapter:
        model, shortcoming = _continue_from(model, args.init_adapter, labels)
    elif args.lora_r:
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(
            task_type=TaskType.SEQ_CLS, r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.1,
            target_modules=LORA_TARGETS, modules_to_save=["classifier", "pooler"]))
    shortcoming.sep_id.fill_(context_sep_id(tokenizer))
    heads = TwoHeads(model, shortcoming)

    def table(rs: list[dict], drop: float) -> Dataset:
        return Dataset.from_list([{
            "text": r["text"], "heading_path": list(r["heading_path"] or []), "drop": 0.0 if r.get("swapped") else drop,
            "category_id": label_id[r["category"]], "shortcoming": bool(r["shortcoming"]),
            "category_weight": 0.0 if r.get("swapped") or _shortcoming_only(r, args.shortcoming_only) else 1.0,
            "weight": row_weight(r, args), "length": len(r["text"]) + sum(map(len, r["heading_path"] or []))}
            for r in rs])

    cat_rows = [r for r in rows if not _shortcoming_only(r, args.shortcoming_only)]
    swaps = swapped_contexts(rows, args.context_swap, args.seed)
    keep_best = KeepBest(heads, args.patience)
    training_args = TrainingArguments(
        output_dir=str(Path(args.out) / "trainer"), num_train_epochs=args.epochs, learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64, weight_decay=0.01,
        warmup_steps=0.06, lr_scheduler_type="linear", max_grad_norm=1.0, seed=args.seed,
        train_sampling_strategy="group_by_length", length_column_name="length", remove_unused_columns=False,
        label_names=["category_labels", "shortcoming_labels"], eval_strategy="epoch", save_strategy="no",
        logging_strategy="epoch", report_to="none", disable_tqdm=not args.progress, use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0)
    trainer = TwoHeadTrainer(
        model=heads, args=training_args,
        train_dataset=table(rows + swaps, args.drop_context),
        eval_dataset=concatenate_datasets([table(val, 0.0), table(val, 1.0)]),
        data_collator=Collator(tokenizer, args.max_length, args.seed), compute_metrics=selection_metrics(labels),
        callbacks=[keep_best, TimeBudget(args.time_budget)],
        category_class_weight=_weights([r["category"] for r in cat_rows], labels),
        shortcoming_class_weight=_weights([bool(r["shortcoming"]) for r in rows], [False, True]))
    start = time.perf_counter()
    result = trainer.train()
    elapsed = time.perf_counter() - start
    heads.load_state_dict(keep_best.best_state)
    heads.to("cpu").eval()

    out = Path(args.out)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    summary = {"args": asdict(args), "labels": labels, "train_examples": len(rows), "swapped_context_rows": len(swaps),
               "validation_examples": len(val),
               "history": keep_best.history, "train_losses": losses, "best_validation_score": round(keep_best.best, 4),
               "train_seconds": round(elapsed, 1),
               "train_paragraphs_per_s": round(result.metrics.get("train_samples_per_second", 0.0), 2),
               "device": str(training_args.device), "torch_threads": torch.get_num_threads()}
    model = heads.clf
    if args.lora_r or args.init_adapter:
        model.save_pretrained(out / "adapter")
        save_shortcoming_head(heads.shortcoming, out / "adapter")
        ModelMeta(labels=labels, max_length=args.max_length).write(out / "adapter")
        model = model.merge_and_unload()
    BertClassifier(TorchRuntime(model, heads.shortcoming), tokenizer,
                   ModelMeta(name=out.name, labels=labels, max_length=args.max_length, training=summary)).save(out)
    (out / "training.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))
    return summary


def train_tfidf(args: TrainArgs, held_out: frozenset[str] | set[str] = frozenset()) -> dict:
    """Fit the TF-IDF + logistic regression baseline on the rows of a corpus's train split that
    ``args`` keeps (less the documents in ``held_out``), weighted as the BERT loss weights them,
    and save it; documents whose doc_id starts with ``args.shortcoming_only`` fit the
    shortcoming model alone."""
    from fazhi.corpora.dataset import load
    from fazhi.models.tfidf import TfidfClassifier

    rows = training_rows(args, load(args.data)["train"], held_out)
    start = time.perf_counter()
    clf = TfidfClassifier().fit([r["text"] for r in rows],
                                [None if _shortcoming_only(r, args.shortcoming_only) else r["category"] for r in rows],
                                [r["shortcoming"] for r in rows], [r["heading_path"] for r in rows],
                                sample_weight=[row_weight(r, args) for r in rows], seed=args.seed)
    record = {"train_examples": len(rows), "train_seconds": round(time.perf_counter() - start, 1), "data": args.data,
              "args": asdict(args)}
    clf.save(args.out, record)
    return record


def run(args: TrainArgs, held_out: frozenset[str] | set[str] = frozenset()) -> dict:
    """``fazhi train``: one model, the baseline or the encoder as ``args.model_type`` says,
    trained without the documents in ``held_out`` (``args.folds`` is
    :func:`fazhi.training.crossval.crossval`'s)."""
    return train_tfidf(args, held_out) if args.model_type == "tfidf" else train(args, held_out)
