"""Fine-tune a BERT-family encoder with a category head and a shortcoming head.

A plain loop (the two heads share one pooled output, which Trainer's single-loss
models don't express without a wrapper of the same size): LoRA adapters by default
(``lora_r=0`` fine-tunes every weight), loss weighted by class frequency and by
the silver label's confidence, outline context dropped at random so that bare
paragraphs work too, batches of similar length (in random order), early stopping on the
validation split, a time budget. Documents named by ``shortcoming_only`` (e.g. the
synthetic reports written with inspection findings) add shortcoming examples without
moving the category head's training data.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn
from tqdm import tqdm

from fazhi.errors import FazhiError
from models.bert import BertClassifier, TwoHeads, length_batches, save_shortcoming_head, with_context

LORA_TARGETS = r".*encoder.*\.(query|key|value|dense)$"


@dataclass
class TrainArgs:
    data: str
    base_model: str
    out: str
    epochs: int = 4
    batch_size: int = 32
    lr: float = 3e-4
    max_length: int = 192
    lora_r: int = 16
    drop_context: float = 0.5
    patience: int = 2
    seed: int = 13
    time_budget: float | None = None  # seconds of training, then stop at the next evaluation
    max_examples: int | None = None
    exclude_sources: str | None = None  # label_source prefix to leave out, e.g. "synthetic"
    shortcoming_only: str | None = None  # doc_id prefix of documents that train the shortcoming head alone
    device: str = "auto"


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _weights(values: list, labels: list) -> torch.Tensor:
    """Inverse square-root class frequency, normalised to mean 1."""
    counts = np.array([max(1, values.count(l)) for l in labels], dtype=float)
    w = (counts.sum() / counts) ** 0.5
    return torch.tensor(w / w.mean(), dtype=torch.float)


def _shortcoming_only(row: dict, prefix: str | None) -> bool:
    """Whether the row's document trains the shortcoming head alone (its doc_id starts with ``prefix``)."""
    return bool(prefix) and row["doc_id"].startswith(prefix)


def shuffled_length_batches(lengths: list[int], batch_size: int, rng: random.Random, pool: int = 50) -> list[list[int]]:
    """Training batches of similar length, in random order: shuffle, sort each pool of
    ``pool × batch_size`` examples by length, cut it into batches, shuffle the batches.

    A random batch pads every member to the longest of its mixed paragraphs and headings; on a
    CPU every padded token costs as much as a real one.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    for k in range(0, len(order), pool * batch_size):
        chunk = sorted(order[k:k + pool * batch_size], key=lengths.__getitem__)
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def load_base(base_model: str, labels: list[str]):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = Path(base_model)
    if not (path / "config.json").is_file():
        raise FazhiError(base_model, "base model directory not found or has no config.json")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
        dtype=torch.float32)
    return model, tokenizer


def train(args: TrainArgs, progress: bool = True) -> dict:
    """Train, keep the best epoch on validation, save to ``args.out``; return the training record."""
    from corpora.dataset import load
    from corpora.taxonomy import load_taxonomy

    _set_seed(args.seed)
    dd = load(args.data)
    rows = [r for r in dd["train"] if not (args.exclude_sources and r["label_source"].startswith(args.exclude_sources))]
    if args.max_examples:
        rows = random.Random(args.seed).sample(rows, min(len(rows), args.max_examples))
    val = list(dd["validation"]) if len(dd["validation"]) else rows[: max(1, len(rows) // 10)]
    if not rows:
        raise FazhiError(args.data, "no training examples left")
    labels = load_taxonomy().labels
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))

    model, tokenizer = load_base(args.base_model, labels)
    if args.lora_r:
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(
            task_type=TaskType.SEQ_CLS, r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.1,
            target_modules=LORA_TARGETS, modules_to_save=["classifier", "pooler"]))
    heads = TwoHeads(model, model.config.hidden_size).to(device)
    params = [p for p in heads.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(rows) / args.batch_size)
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, int(0.06 * total))) * max(0.0, 1 - s / total))
    label_id = {l: i for i, l in enumerate(labels)}
    cat_rows = [r for r in rows if not _shortcoming_only(r, args.shortcoming_only)]
    cat_loss = nn.CrossEntropyLoss(weight=_weights([r["category"] for r in cat_rows], labels).to(device),
                                   reduction="none")
    sc_loss = nn.CrossEntropyLoss(weight=_weights([bool(r["shortcoming"]) for r in rows], [False, True]).to(device),
                                  reduction="none")
    rng = random.Random(args.seed)

    def batch_tensors(batch, drop: float):
        texts = [with_context(r["text"], None if rng.random() < drop else r["heading_path"]) for r in batch]
        enc = tokenizer(texts, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")
        return {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    @torch.no_grad()
    def evaluate_split() -> dict:
        heads.eval()
        out = {}
        for mode, drop in (("with_context", 0.0), ("alone", 1.0)):
            pc, ps = [""] * len(val), [False] * len(val)
            for idx in length_batches([len(r["text"]) for r in val], 64):
                c, s = heads(**batch_tensors([val[i] for i in idx], drop))
                for i, cj, sj in zip(idx, c.argmax(-1).tolist(), s.argmax(-1).bool().tolist()):
                    pc[i], ps[i] = labels[cj], sj
            gold_c = [r["category"] for r in val]
            out[mode] = {"category_macro_f1": round(float(f1_score(gold_c, pc, average="macro", zero_division=0)), 4),
                         "shortcoming_f1": round(float(f1_score([bool(r["shortcoming"]) for r in val], ps,
                                                                zero_division=0)), 4)}
        heads.train()
        out["score"] = round(sum(v["category_macro_f1"] + v["shortcoming_f1"] for v in out.values()) / 4, 4)
        return out

    history, best, best_state, bad, seen, train_time = [], -1.0, None, 0, 0, 0.0
    start = time.perf_counter()
    heads.train()
    stop = False
    for epoch in range(args.epochs):
        batches = shuffled_length_batches([len(r["text"]) for r in rows], args.batch_size, rng)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{args.epochs}", disable=not progress)
        losses = []
        for idx in bar:
            tick = time.perf_counter()
            batch = [rows[j] for j in idx]
            c, s = heads(**batch_tensors(batch, args.drop_context))
            w = torch.tensor([float(r["confidence"]) for r in batch], device=device)
            yc = torch.tensor([label_id[r["category"]] for r in batch], device=device)
            ys = torch.tensor([int(bool(r["shortcoming"])) for r in batch], device=device)
            wc = torch.tensor([0.0 if _shortcoming_only(r, args.shortcoming_only) else 1.0 for r in batch], device=device)
            loss = ((cat_loss(c, yc) * wc + sc_loss(s, ys)) * w).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            seen += len(batch)
            losses.append(loss.item())
            train_time += time.perf_counter() - tick
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            if args.time_budget and time.perf_counter() - start > args.time_budget:
                stop = True
                break
        record = {"epoch": epoch + 1, "train_loss": round(float(np.mean(losses)), 4), "first_loss": round(losses[0], 4),
                  "validation": evaluate_split()}
        history.append(record)
        if progress:
            tqdm.write(json.dumps(record))
        if record["validation"]["score"] > best:
            best, bad = record["validation"]["score"], 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in heads.state_dict().items()})
        else:
            bad += 1
        if stop or bad >= args.patience:
            break
    elapsed = time.perf_counter() - start
    heads.load_state_dict(best_state)
    heads.to("cpu").eval()

    out = Path(args.out)
    summary = {"args": asdict(args), "labels": labels, "train_examples": len(rows), "validation_examples": len(val),
               "history": history, "best_validation_score": best, "train_seconds": round(elapsed, 1),
               "train_paragraphs_per_s": round(seen / train_time, 2), "device": str(device),
               "torch_threads": torch.get_num_threads()}
    model = heads.clf
    if args.lora_r:
        model.save_pretrained(out / "adapter")
        save_shortcoming_head(heads.shortcoming, out / "adapter")
        (out / "adapter" / "fazhi.json").write_text(json.dumps({"labels": labels, "max_length": args.max_length}))
        model = model.merge_and_unload()
    BertClassifier(model, tokenizer, heads.shortcoming, args.max_length, name=out.name).save(out, {"training": summary})
    (out / "training.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))
    return summary


def train_tfidf(data: str | Path, out: str | Path, exclude_sources: str | None = None,
                shortcoming_only: str | None = None) -> dict:
    """Fit the TF-IDF + logistic regression baseline on a corpus's train split and save it;
    documents whose doc_id starts with ``shortcoming_only`` fit the shortcoming model alone."""
    from corpora.dataset import load
    from models.tfidf import TfidfClassifier

    train_split = load(data)["train"]
    rows = [r for r in train_split if not (exclude_sources and r["label_source"].startswith(exclude_sources))]
    start = time.perf_counter()
    clf = TfidfClassifier().fit([r["text"] for r in rows],
                                [None if _shortcoming_only(r, shortcoming_only) else r["category"] for r in rows],
                                [r["shortcoming"] for r in rows], [r["heading_path"] for r in rows])
    record = {"train_examples": len(rows), "train_seconds": round(time.perf_counter() - start, 1), "data": str(data)}
    clf.save(out, record)
    return record
