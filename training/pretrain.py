"""Domain-adaptive pretraining: continue an encoder's masked-language-model training on unlabeled
text of the domain (government work reports, laws, enforcement documents, report pages).

As ``run_mlm.py`` of the transformers examples: the options are one dataclass
(:class:`PretrainArgs`, which is also the ``fazhi pretrain`` command line), the loop is
``Trainer``'s with ``DataCollatorForLanguageModeling``. Masking is per tokenizer piece: the
e5 vocabulary cuts Chinese into single characters and frequent two- to three-character words
("行政", "负责人"), so masking a piece masks a character or a whole common word. The library's
``whole_word_mask`` finds words at SentencePiece's "▁" marks, which Chinese text without
spaces has only once per run of text, so it would mask whole sentences; no word segmenter is
added. The result in ``out/`` is the base's architecture with the adapted weights (the MLM
head left out, the base's pooler kept), a stock checkpoint for ``fazhi train --base-model``.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

from fazhi.errors import FazhiError
from fazhi.training.train import TimeBudget

CHECKPOINTS = "checkpoints"  # Trainer checkpoints under out/, for --resume
INITIAL_EVAL = "initial_eval.json"  # the held-out loss before any training, kept beside the checkpoints
SUMMARY = "pretrain.json"
LOSS_PNG = "loss.png"
MASK = "<mask>"


@dataclass
class PretrainArgs:
    """Options of ``fazhi pretrain`` (each field is a ``--flag``)."""

    base_model: str = field(metadata={"help": "Local Hugging Face encoder checkpoint (BERT, RoBERTa, XLM-R) to adapt"})
    corpus: list[str] = field(metadata={
        "help": "Unlabeled sources: JSONL corpora ({'text'} records), gold-format files, report files, or "
                "folders of them (e.g. ../shared/corpora/gov_work_reports_national)"})
    out: str = field(metadata={"help": "Output directory: the adapted encoder, pretrain.json, loss.png, checkpoints/"})
    time_budget: float | None = field(default=None, metadata={
        "help": "Seconds of training, then a last evaluation and checkpoint, and stop"})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the paragraphs"})
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps (overrides --epochs when positive)"})
    batch_size: int = 16
    lr: float = field(default=5e-5, metadata={"help": "Peak learning rate (linear warm-up and decay)"})
    warmup: float = field(default=0.06, metadata={"help": "Share of the steps spent warming up"})
    max_length: int = field(default=128, metadata={"help": "Tokens per paragraph (longer ones are truncated)"})
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens masked"})
    min_chars: int = field(default=20, metadata={"help": "Shorter lines (headings, article numbers) are left out"})
    max_chars: int = field(default=256, metadata={"help": "Longer lines are cut at sentence ends into pieces this long"})
    max_per_source: int | None = field(default=None, metadata={
        "help": "Keep a random subset of this many paragraphs of each --corpus source"})
    max_examples: int | None = field(default=None, metadata={"help": "Keep a random subset of this many in all"})
    eval_examples: int = field(default=256, metadata={
        "help": "Paragraphs held out for the masked-LM loss (at most a tenth of them)"})
    save_steps: int = field(default=200, metadata={"help": "Steps between checkpoints and evaluations"})
    logging_steps: int = field(default=20, metadata={"help": "Steps between loss / tokens-per-second log lines"})
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint in OUT/checkpoints"})
    seed: int = 13
    progress: bool = field(default=True, metadata={"help": "Progress bars"})

    def __post_init__(self) -> None:
        if isinstance(self.corpus, str):
            self.corpus = [self.corpus]
        for name in ("batch_size", "max_length", "save_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise FazhiError(f"--{name.replace('_', '-')}", f"must be positive, got {getattr(self, name)}")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise FazhiError("--epochs", f"must be positive (or --max-steps given), got {self.epochs}")
        if not 0 < self.mlm_probability < 1:
            raise FazhiError("--mlm-probability", f"expected a share in (0, 1), got {self.mlm_probability}")
        if not 0 <= self.warmup < 1:
            raise FazhiError("--warmup", f"expected a share in [0, 1), got {self.warmup}")


def last_checkpoint(out: str | Path) -> Path | None:
    """The newest ``checkpoint-N`` folder under ``out/checkpoints`` (None where there is none)."""
    folders = [p for p in (Path(out) / CHECKPOINTS).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(folders, key=lambda p: int(p.name.split("-")[-1])) if folders else None


def load_mlm(base_model: str):
    """The base checkpoint with a masked-LM head (a fresh one, tied to the input embeddings,
    where the checkpoint is an encoder alone), and its tokenizer, with a mask token added where
    it has none."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    path = Path(base_model)
    if not (path / "config.json").is_file():
        raise FazhiError(base_model, "base model directory not found or has no config.json")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForMaskedLM.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise FazhiError(base_model, f"cannot load it as a masked-LM encoder: {str(err).splitlines()[0]}") from None
    if tokenizer.mask_token_id is None:
        # a tokenizer cut for classification (build/e5-base) may have dropped <mask>: add it back
        # as one new piece, its embedding the mean of the others (resize_token_embeddings' default)
        tokenizer.add_special_tokens({"mask_token": MASK})
        model.resize_token_embeddings(len(tokenizer))
    return model, tokenizer


def save_encoder(mlm, base_model: str, tokenizer, out: Path) -> Path:
    """Write the adapted encoder as the base's own architecture (``AutoModel``): the base loaded
    again, every encoder weight replaced by the trained one; what the MLM model lacks (the pooler
    of a BERT checkpoint) stays the base's. Returns ``out``."""
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(base_model, dtype=torch.float32)
    if encoder.get_input_embeddings().num_embeddings != len(tokenizer):  # the mask token load_mlm added
        encoder.resize_token_embeddings(len(tokenizer))
    missing, unexpected = encoder.load_state_dict(mlm.base_model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("pooler.") for k in missing):
        raise FazhiError(base_model, f"the masked-LM encoder does not match the base (missing {missing[:3]}, "
                                     f"unexpected {unexpected[:3]})")
    encoder.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


class SaveOnStop(TrainerCallback):
    """A checkpoint whenever training stops early (time budget), so that ``--resume`` continues
    from there; without held-out paragraphs, no last evaluation (there is nothing to evaluate)."""

    def __init__(self, evaluate: bool):
        self.evaluate = evaluate

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_training_stop:
            control.should_save = True
            control.should_evaluate = control.should_evaluate and self.evaluate


def loss_curve(history: list[dict], path: Path) -> Path:
    """A PNG of the training loss and the held-out loss (masked-LM cross-entropy, nats per masked
    token) against the optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    held = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    for points, name, style in ((train, "training", "-"), (held, "held out", "o--")):
        if points:
            ax.plot(*zip(*points), style, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("masked-LM loss (nats / masked token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def pretrain(args: PretrainArgs) -> dict:
    """Masked-LM training of ``args.base_model`` on the paragraphs of ``args.corpus``; saves the
    encoder, ``pretrain.json`` (losses, tokens/s, seconds) and ``loss.png`` to ``args.out`` and
    returns the summary."""
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from fazhi.corpora.unlabeled import unlabeled_paragraphs

    out = Path(args.out)
    resume = last_checkpoint(out) if args.resume else None
    if args.resume and resume is None:
        raise FazhiError("--resume", f"no checkpoint in {out / CHECKPOINTS} to continue from")
    texts = unlabeled_paragraphs(args.corpus, args.min_chars, args.max_chars, args.max_per_source, args.seed,
                                 progress=args.progress)
    random.Random(args.seed).shuffle(texts)  # the same order on every run, so a resumed run sees what remained
    if args.max_examples:
        texts = texts[:args.max_examples]
    n_eval = min(args.eval_examples, len(texts) // 10)
    held, texts = texts[:n_eval], texts[n_eval:]
    if not texts:
        raise FazhiError("--corpus", "too few paragraphs to train on")
    torch.manual_seed(args.seed)
    model, tokenizer = load_mlm(args.base_model)

    def tokenized(rows: list[str]) -> Dataset:
        ds = Dataset.from_dict({"text": rows}).map(
            lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_length, return_special_tokens_mask=True),
            batched=True, remove_columns=["text"])
        return ds.map(lambda r: {"length": len(r["input_ids"])})

    mlm_collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=args.mlm_probability, seed=args.seed)

    def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
        return mlm_collator([{k: v for k, v in r.items() if k != "length"} for r in rows])

    train_set, eval_set = tokenized(texts), tokenized(held) if held else None
    training_args = TrainingArguments(
        output_dir=str(out / CHECKPOINTS), num_train_epochs=args.epochs, max_steps=args.max_steps,
        learning_rate=args.lr, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=32,
        weight_decay=0.01, warmup_steps=args.warmup, lr_scheduler_type="linear", max_grad_norm=1.0, seed=args.seed,
        train_sampling_strategy="group_by_length", length_column_name="length", remove_unused_columns=False,
        eval_strategy="steps" if eval_set else "no", eval_steps=args.save_steps, save_strategy="steps",
        save_steps=args.save_steps, save_total_limit=2, logging_strategy="steps", logging_steps=args.logging_steps,
        include_num_input_tokens_seen="non_padding", report_to="none", disable_tqdm=not args.progress,
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0)
    trainer = Trainer(model=model, args=training_args, train_dataset=train_set, eval_dataset=eval_set,
                      data_collator=collate, processing_class=tokenizer,
                      callbacks=[TimeBudget(args.time_budget), SaveOnStop(eval_set is not None)])
    initial_file = out / CHECKPOINTS / INITIAL_EVAL
    if resume is None and eval_set:
        initial = {"step": 0, "eval_loss": round(trainer.evaluate()["eval_loss"], 4)}
        initial_file.parent.mkdir(parents=True, exist_ok=True)
        initial_file.write_text(json.dumps(initial))
    initial = json.loads(initial_file.read_text()) if initial_file.is_file() else None
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    elapsed = time.perf_counter() - start

    save_encoder(trainer.model.to("cpu"), args.base_model, tokenizer, out)
    history = ([initial] if initial else []) + trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    held_losses = [h["eval_loss"] for h in history if "eval_loss" in h]
    rates = [h["train_tokens_per_second"] for h in history if "train_tokens_per_second" in h]
    summary = {
        "args": asdict(args), "paragraphs": len(texts), "held_out_paragraphs": len(held),
        "tokens_seen": trainer.state.num_input_tokens_seen, "steps": trainer.state.global_step,
        "resumed_from": str(resume) if resume else None,
        "train_loss_first": losses[0] if losses else None, "train_loss_last": losses[-1] if losses else None,
        "eval_loss_first": held_losses[0] if held_losses else None,
        "eval_loss_last": held_losses[-1] if held_losses else None,
        "train_seconds": round(elapsed, 1), "tokens_per_s": rates[-1] if rates else None,
        "train_paragraphs_per_s": round(result.metrics.get("train_samples_per_second", 0.0), 2),
        "device": str(training_args.device), "torch_threads": torch.get_num_threads(),
        "history": [{k: v for k, v in h.items() if k in ("step", "loss", "eval_loss", "train_tokens_per_second",
                                                          "learning_rate")} for h in history
                    if "loss" in h or "eval_loss" in h],
    }
    loss_curve(history, out / LOSS_PNG)
    (out / SUMMARY).write_text(json.dumps(summary, ensure_ascii=False, indent=2))
    return summary
