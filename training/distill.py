"""Distil a saved two-head model (the teacher, e.g. the merged release) into a student with
fewer encoder layers, on ``transformers.Trainer``.

The student is the teacher's architecture with ``layers`` of its encoder layers (spread evenly,
the first and the last always among them: :func:`kept_layers`), its embeddings and both heads
copied, every weight then trained. The targets are the teacher's raw (uncalibrated) outputs on
every training input, computed once before training on the teacher's default runtime (the
ONNX export where there is a fresh one) and cached in ``out/teacher_logits.npz``:

* category: KL divergence between the teacher's and the student's distributions softened by
  ``temperature`` (times temperature², so that its gradients keep their size: Hinton et al. 2015);
* shortcoming: binary cross-entropy of the student's shortcoming logit against the teacher's
  probability;
* optionally (``hard_weight``), cross-entropy on the human labels of the rows that have them.

The inputs are the labelled rows of a corpus's train split (sent with and without their
headings, as in training) and unlabeled paragraphs of further sources; the student is chosen
on the corpus's validation split (annotated/dev for ``build/corpus-mixed``) by the score
``fazhi train`` uses, with early stopping and a time budget. It saves as every fazhi BERT model
does (``fazhi.json`` naming its teacher, both heads, the tokenizer): calibrate, evaluate and
export it as any other.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fazhi.errors import FazhiError
from fazhi.models.bert import BertClassifier, ShortcomingHead, TorchRuntime, TwoHeads, with_context
from fazhi.models.meta import ModelMeta
from fazhi.training.train import HUMAN, KeepBest, TimeBudget, TwoHeadTrainer, selection_metrics

TEACHER_CACHE = "teacher_logits.npz"
_LAYER = re.compile(r"(encoder\.layer\.)(\d+)(\.)")


@dataclass
class DistillArgs:
    """Options of ``fazhi distill`` (each field is a ``--flag``)."""

    teacher: str = field(metadata={"help": "Saved fazhi BERT model directory to learn from (e.g. build/release-model)"})
    out: str = field(metadata={"help": "Output model directory"})
    layers: int = field(default=4, metadata={"help": "Encoder layers of the student (fewer than the teacher's)"})
    data: str = field(default="build/corpus-mixed", metadata={
        "help": "Corpus from `fazhi corpus build`: its train rows are inputs (labels used only with --hard-weight), "
                "its validation split chooses the student"})
    unlabeled: list[str] = field(default_factory=list, metadata={
        "help": "Further sources of unlabeled paragraphs (JSONL corpora, gold files, reports, folders)"})
    max_per_source: int | None = field(default=2000, metadata={
        "help": "Random subset of this many paragraphs of each --unlabeled source"})
    max_chars: int = field(default=256, metadata={"help": "Unlabeled lines are cut at sentence ends into pieces this long"})
    temperature: float = field(default=2.0, metadata={"help": "Softening of both category distributions in the KL term"})
    hard_weight: float = field(default=0.5, metadata={
        "help": "Weight of cross-entropy on the human labels (rows with label_source human:…); 0: soft labels alone"})
    epochs: int = field(default=10, metadata={"help": "Passes over the inputs"})
    batch_size: int = 32
    lr: float = field(default=1e-4, metadata={"help": "Learning rate (every weight of the student trains)"})
    max_length: int | None = field(default=None, metadata={"help": "Tokens per input (default: the teacher's)"})
    drop_context: float = field(default=0.5, metadata={"help": "Share of labelled inputs sent without their headings"})
    eval_steps: int = field(default=200, metadata={"help": "Steps between evaluations on the validation split"})
    patience: int = field(default=4, metadata={"help": "Evaluations without a better validation score before stopping"})
    time_budget: float | None = field(default=None, metadata={
        "help": "Seconds of training (the teacher's outputs are computed before), then evaluate once more and stop"})
    seed: int = 13
    progress: bool = field(default=True, metadata={"help": "Progress bars"})

    def __post_init__(self) -> None:
        if isinstance(self.unlabeled, str):
            self.unlabeled = [self.unlabeled]
        for name in ("layers", "epochs", "batch_size", "eval_steps", "patience"):
            if getattr(self, name) < 1:
                raise FazhiError(f"--{name.replace('_', '-')}", f"must be positive, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise FazhiError("--temperature", f"must be positive, got {self.temperature}")
        if self.hard_weight < 0:
            raise FazhiError("--hard-weight", f"must not be negative, got {self.hard_weight}")
        if not 0 <= self.drop_context <= 1:
            raise FazhiError("--drop-context", f"expected a share in [0, 1], got {self.drop_context}")


def kept_layers(teacher_layers: int, layers: int) -> list[int]:
    """The teacher layers (0-based) the student starts from: ``layers`` of them evenly spaced from
    the first to the last, rounded (4 of 12: [0, 4, 7, 11]; 6 of 12: [0, 2, 4, 7, 9, 11]).

    The first layer stays next to the embeddings it was trained on, the last gives the token
    states both heads were trained on; the rest sample the depth evenly, as DistilBERT's every
    other layer and TinyBERT's uniform mapping do.
    """
    if not 1 <= layers < teacher_layers:
        raise FazhiError("--layers", f"must be between 1 and {teacher_layers - 1} (the teacher has {teacher_layers} "
                                     f"layers), got {layers}")
    if layers == 1:
        return [teacher_layers - 1]
    return [int(round(x)) for x in np.linspace(0, teacher_layers - 1, layers)]


def student_from(teacher_model: nn.Module, keep: list[int]) -> nn.Module:
    """A copy of a sequence-classification model with only the encoder layers ``keep`` (renumbered
    0..len-1), every other weight (embeddings, pooler, classifier) the teacher's."""
    from transformers import AutoModelForSequenceClassification

    config = teacher_model.config.__class__.from_dict(teacher_model.config.to_dict())
    config.num_hidden_layers = len(keep)
    student = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    teacher_state = teacher_model.state_dict()
    state = {}
    for key in student.state_dict():
        source = _LAYER.sub(lambda m: f"{m[1]}{keep[int(m[2])]}{m[3]}", key)
        state[key] = teacher_state[source].clone()
    student.load_state_dict(state, strict=True)
    return student


def _digest(texts: list[str], teacher: Path) -> str:
    from fazhi.models.onnx import weights_digest

    h = hashlib.sha256(weights_digest(teacher).encode())
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    return h.hexdigest()


def teacher_logits(teacher: Path, inputs: list[str], cache: Path, progress: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """The teacher's raw category logits (n, K) and shortcoming logits (n,) of the best token on
    ``inputs``, and the runtime that gave them; read from ``cache`` when it was written for the
    same inputs and teacher weights, else computed (batches of 256 inputs) and written there."""
    from tqdm.auto import tqdm

    key = _digest(inputs, teacher)
    if cache.is_file():
        saved = np.load(cache, allow_pickle=False)
        if str(saved["key"]) == key:
            return saved["category"], saved["shortcoming"], str(saved["runtime"])
    clf = BertClassifier.load(teacher, "auto")
    cats, scs = [], []
    for i in tqdm(range(0, len(inputs), 256), desc="teacher", unit="batch", disable=not progress):
        c, s = clf.logits(inputs[i:i + 256])
        cats.append(c)
        scs.append(s[:, 1])
    cat, sc = np.concatenate(cats).astype(np.float32), np.concatenate(scs).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, key=key, category=cat, shortcoming=sc, runtime=clf.backend)
    return cat, sc, clf.backend


class DistillCollator:
    """Tokenizes a batch of rows (each row's headings dropped with its ``drop`` share) and adds
    the teacher's logits of the exact input sent, where the row has them, and its labels."""

    def __init__(self, tokenizer, max_length: int, seed: int, category: np.ndarray, shortcoming: np.ndarray):
        self.tokenizer, self.max_length, self.rng = tokenizer, max_length, random.Random(seed)
        self.category, self.shortcoming = torch.from_numpy(category), torch.from_numpy(shortcoming)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        alone = [not r["heading_path"] or self.rng.random() < r["drop"] for r in rows]
        texts = [r["text"] if a else with_context(r["text"], r["heading_path"]) for r, a in zip(rows, alone)]
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        batch = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        batch["category_labels"] = torch.tensor([r["category_id"] for r in rows])
        batch["shortcoming_labels"] = torch.tensor([int(r["shortcoming"]) for r in rows])
        batch["hard"] = torch.tensor([r["hard"] for r in rows], dtype=torch.float)
        index = [r["t_alone"] if a else r["t_context"] for r, a in zip(rows, alone)]
        if all(i >= 0 for i in index):  # training rows; validation rows have no teacher outputs
            batch["teacher_category"] = self.category[index]
            batch["teacher_shortcoming"] = self.shortcoming[index]
        return batch


class DistillTrainer(TwoHeadTrainer):
    """``Trainer`` with the distillation loss (module docstring), the mean over the batch; on
    validation batches, which carry no teacher outputs, the plain cross-entropy of both heads."""

    def __init__(self, *args, temperature: float, hard_weight: float, **kwargs):
        n = kwargs.pop("num_labels")
        super().__init__(*args, category_class_weight=torch.ones(n), shortcoming_class_weight=torch.ones(2), **kwargs)
        self.temperature, self.hard_weight = temperature, hard_weight

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        yc, ys, hard = inputs.pop("category_labels"), inputs.pop("shortcoming_labels"), inputs.pop("hard")
        t_cat, t_sc = inputs.pop("teacher_category", None), inputs.pop("teacher_shortcoming", None)
        cat, sc = model(**inputs)
        ce = self.cat_loss.to(cat.device)(cat, yc) + self.sc_loss.to(sc.device)(sc, ys)  # (b,)
        if t_cat is None:
            loss = ce.mean()
        else:
            t = self.temperature
            kl = F.kl_div(F.log_softmax(cat / t, -1), F.log_softmax(t_cat / t, -1), reduction="none",
                          log_target=True).sum(-1) * t * t
            bce = F.binary_cross_entropy_with_logits(sc[:, 1], torch.sigmoid(t_sc), reduction="none")
            loss = (kl + bce + self.hard_weight * hard * ce).mean()
        return (loss, {"category_logits": cat, "shortcoming_logits": sc}) if return_outputs else loss


def distill(args: DistillArgs) -> dict:
    """Distil ``args.teacher`` into a student of ``args.layers`` layers, keep its best evaluation on
    the validation split, save it to ``args.out`` (``training.json`` beside it); return the record."""
    from datasets import Dataset, concatenate_datasets
    from transformers import TrainingArguments

    from fazhi.corpora.dataset import load
    from fazhi.corpora.unlabeled import unlabeled_paragraphs

    teacher_dir, out = Path(args.teacher), Path(args.out)
    if out.resolve() == teacher_dir.resolve():
        raise FazhiError("--out", "must not be the teacher's directory")
    teacher = BertClassifier.load(teacher_dir, "torch")
    labels = teacher.labels
    keep = kept_layers(teacher.runtime.model.config.num_hidden_layers, args.layers)
    max_length = args.max_length or teacher.max_length
    dd = load(args.data)
    label_id = {l: i for i, l in enumerate(labels)}
    unknown = {r for r in dd["train"]["category"] if r not in label_id}
    if unknown:
        raise FazhiError(args.data, f"categories the teacher does not know: {sorted(unknown)[:3]}")
    val = [r for r in dd["validation"] if r["kind"] == "body"] or list(dd["validation"])
    if not val:
        raise FazhiError(args.data, "the corpus has no validation split to choose the student on")
    extra = unlabeled_paragraphs(args.unlabeled, max_chars=args.max_chars, max_per_source=args.max_per_source,
                                 seed=args.seed, progress=args.progress) if args.unlabeled else []
    # the validation split chooses the student: none of its paragraphs may also train it
    held = {r["text"] for r in dd["validation"]}
    dropped = sum(p in held for p in extra)
    extra = [p for p in extra if p not in held]

    inputs: dict[str, int] = {}
    index = lambda text: inputs.setdefault(text, len(inputs))  # noqa: E731
    rows = []
    for r in dd["train"]:
        path = list(r["heading_path"] or [])
        rows.append({"text": r["text"], "heading_path": path, "drop": args.drop_context,
                     "category_id": label_id[r["category"]], "shortcoming": bool(r["shortcoming"]),
                     "hard": float(r["label_source"].startswith(HUMAN)), "t_alone": index(r["text"]),
                     "t_context": index(with_context(r["text"], path)) if path else -1})
    rows += [{"text": p, "heading_path": [], "drop": 1.0, "category_id": 0, "shortcoming": False, "hard": 0.0,
              "t_alone": index(p), "t_context": -1} for p in extra]
    t_cat, t_sc, runtime = teacher_logits(teacher_dir, list(inputs), out / TEACHER_CACHE, args.progress)

    def table(rs: list[dict]) -> Dataset:
        return Dataset.from_list([{**r, "length": len(r["text"]) + sum(map(len, r["heading_path"]))} for r in rs])

    def val_rows(drop: float) -> list[dict]:
        return [{"text": r["text"], "heading_path": list(r["heading_path"] or []), "drop": drop,
                 "category_id": label_id[r["category"]], "shortcoming": bool(r["shortcoming"]), "hard": 1.0,
                 "t_alone": -1, "t_context": -1} for r in val]

    torch.manual_seed(args.seed)
    student = student_from(teacher.runtime.model, keep)
    head = ShortcomingHead(student.config.hidden_size)
    head.load_state_dict(teacher.runtime.shortcoming.state_dict())
    heads = TwoHeads(student, head)
    tokenizer = teacher.tokenizer
    del teacher  # the student's weights are copies; the teacher's memory goes back before training
    keep_best = KeepBest(heads, args.patience)
    training_args = TrainingArguments(
        output_dir=str(out / "trainer"), num_train_epochs=args.epochs, learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64, weight_decay=0.01,
        warmup_steps=0.06, lr_scheduler_type="linear", max_grad_norm=1.0, seed=args.seed,
        train_sampling_strategy="group_by_length", length_column_name="length", remove_unused_columns=False,
        label_names=["category_labels", "shortcoming_labels"], eval_strategy="steps", eval_steps=args.eval_steps,
        save_strategy="no", logging_strategy="steps", logging_steps=max(1, args.eval_steps // 4), report_to="none",
        disable_tqdm=not args.progress, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0)
    trainer = DistillTrainer(
        model=heads, args=training_args, train_dataset=table(rows),
        eval_dataset=concatenate_datasets([table(val_rows(0.0)), table(val_rows(1.0))]),
        data_collator=DistillCollator(tokenizer, max_length, args.seed, t_cat, t_sc),
        compute_metrics=selection_metrics(labels), callbacks=[keep_best, TimeBudget(args.time_budget)],
        temperature=args.temperature, hard_weight=args.hard_weight, num_labels=len(labels))
    first = trainer.evaluate()  # the student as initialised: kept if no training step beats it
    start = time.perf_counter()
    result = trainer.train()
    elapsed = time.perf_counter() - start
    heads.load_state_dict(keep_best.best_state)
    heads.to("cpu").eval()

    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    summary = {"args": asdict(args), "labels": labels, "teacher": str(teacher_dir), "teacher_runtime": runtime,
               "kept_layers": keep, "labelled_rows": len(dd["train"]), "unlabeled_paragraphs": len(extra),
               "unlabeled_dropped_as_validation": dropped, "teacher_inputs": len(inputs),
               "validation_examples": len(val), "initial_validation_score": round(first["eval_score"], 4),
               "history": keep_best.history, "train_losses": losses,
               "best_validation_score": round(keep_best.best, 4), "train_seconds": round(elapsed, 1),
               "train_inputs_per_s": round(result.metrics.get("train_samples_per_second", 0.0), 2),
               "device": str(training_args.device), "torch_threads": torch.get_num_threads()}
    BertClassifier(TorchRuntime(heads.clf, heads.shortcoming), tokenizer,
                   ModelMeta(name=out.name, labels=labels, max_length=max_length, training=summary,
                             teacher=str(teacher_dir))).save(out)
    (out / "training.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))
    return summary
