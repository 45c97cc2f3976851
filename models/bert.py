"""BERT-family classifier: a category head and a shortcoming head on one encoder.

Saved as a Hugging Face directory: the category model is a stock
``BertForSequenceClassification`` (``AutoModelForSequenceClassification`` and
``pipeline("text-classification")`` load it, label names in ``config.id2label``);
the shortcoming head is ``shortcoming_head.safetensors`` beside it, applied to the
encoder's token states (:class:`ShortcomingHead`). The outline context, when known, is
fed in front of the text: ``"heading › heading ｜ text"``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from fazhi.errors import FazhiError
from fazhi.models.base import HeadingPaths, Prediction, check_inputs
from fazhi.models.meta import SC_HEAD, ModelMeta

if TYPE_CHECKING:
    from fazhi.models.onnx import CategoryNear

CONTEXT_SEP = " ｜ "


def with_context(text: str, heading_path: Sequence[str] | None) -> str:
    """The model input: the two nearest headings, a separator, then the paragraph."""
    return " › ".join(heading_path[-2:]) + CONTEXT_SEP + text if heading_path else text


class ShortcomingHead(nn.Module):
    """Scores every token of the paragraph for evidence of an admitted shortcoming; a
    paragraph scores as its strongest token.

    A paragraph states a shortcoming when any one of its sentences does, wherever it sits, so
    its score is the strongest local evidence rather than a summary of the whole paragraph.
    Only the paragraph's own tokens compete for that maximum, never its headings': a heading
    that names problems ("存在的问题") must not flag the achievements listed under it. The
    context still reaches the paragraph's tokens through attention. ``sep_id`` is the token id
    of the context separator (-1: every token competes, as heads saved before it did). The
    token scores are not word attributions: the last layer mixes the whole paragraph into every
    token, so on a paragraph the head rejects they are nearly flat.
    """

    def __init__(self, hidden: int, sep_id: int = -1):
        super().__init__()
        self.score = nn.Linear(hidden, 1)
        self.register_buffer("sep_id", torch.tensor(sep_id, dtype=torch.long))

    def forward(self, states: torch.Tensor, attention_mask: torch.Tensor,
                input_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token states (b, tokens, hidden), mask and ids (b, tokens) → logits (b, 2) = ``[0, best
        token score]``, so that the softmax's second column is the sigmoid of the best token's score."""
        # float arithmetic, not boolean where(): ONNX Runtime's CPU kernels have no boolean Where
        mask = attention_mask.float()
        if input_ids is not None:
            sep = (input_ids == self.sep_id).float()
            after = (sep.cumsum(-1) > 0).float() * (1 - sep)  # the paragraph: tokens after the first separator
            has = sep.amax(-1, keepdim=True)
            mask = mask * (has * after + (1 - has))
        token = self.score(states).squeeze(-1).masked_fill(mask == 0, -1e4)
        best = token.max(dim=-1).values
        return torch.stack([torch.zeros_like(best), best], dim=-1)


def context_sep_id(tokenizer) -> int:
    """The token id the tokenizer gives the context separator's bar (-1 where it has none of its own)."""
    import unicodedata

    bar = CONTEXT_SEP.strip()
    forms = {bar, unicodedata.normalize("NFKC", bar)}  # tokenizers that normalize see "｜" as "|"
    for i in tokenizer(CONTEXT_SEP, add_special_tokens=False)["input_ids"]:
        if i != tokenizer.unk_token_id and any(f in tokenizer.convert_ids_to_tokens(i) for f in forms):
            return int(i)
    return -1


def load_shortcoming_head(directory: str | Path) -> ShortcomingHead:
    """The shortcoming head saved in ``directory``."""
    path = Path(directory) / SC_HEAD
    state = load_file(str(path))
    if "score.weight" not in state:
        raise FazhiError(str(path), "a shortcoming head of an older format (one pooled vector); retrain the model")
    head = ShortcomingHead(state["score.weight"].shape[1], int(state.get("sep_id", torch.tensor(-1))))
    head.load_state_dict({**head.state_dict(), **state})
    return head


def save_shortcoming_head(head: ShortcomingHead, directory: str | Path) -> None:
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(Path(directory) / SC_HEAD))


class TwoHeads(PreTrainedModel):
    """A sequence-classification model of any architecture (BERT, RoBERTa, XLM-R; plain or with
    LoRA) with a second head: its own head gives the category logits, the shortcoming head
    reads the last layer's token states.

    Only the model's public outputs are used (``logits``, ``hidden_states``), so no
    architecture's inner attribute names are assumed. Training and export wrap the model in
    it; the saved directory stays the stock classification model plus
    ``shortcoming_head.safetensors``.
    """

    config_class = PretrainedConfig
    # attention is the wrapped model's: whatever it was loaded with, the wrapper accepts
    _supports_sdpa = _supports_flash_attn = _supports_flex_attn = _supports_attention_backend = True

    def __init__(self, clf: nn.Module, shortcoming: ShortcomingHead | None = None):
        super().__init__(clf.config)
        self.clf = clf
        self.shortcoming = shortcoming if shortcoming is not None else ShortcomingHead(clf.config.hidden_size)
        self.dropout = nn.Dropout(getattr(clf.config, "hidden_dropout_prob", 0.1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids, mask (and segment ids) (b, tokens) → category logits (b, K), shortcoming logits (b, 2)."""
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.clf(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, **extra)
        states = self.dropout(out.hidden_states[-1])
        return out.logits, self.shortcoming(states, attention_mask, input_ids)


class TorchRuntime:
    """Runs the two heads in PyTorch: the category model and its shortcoming head."""

    def __init__(self, model, shortcoming: ShortcomingHead):
        self.model = model.eval()
        self.shortcoming = shortcoming.eval()
        self.heads = TwoHeads(self.model, self.shortcoming).eval()
        self.name = "torch"

    @classmethod
    def load(cls, path: Path) -> "TorchRuntime":
        from transformers import AutoModelForSequenceClassification

        try:
            model = AutoModelForSequenceClassification.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise FazhiError(str(path), f"cannot load the model: {str(err).splitlines()[0]}") from None
        return cls(model, load_shortcoming_head(path))

    @torch.inference_mode()
    def logits(self, batches: list[tuple[list[int], dict[str, np.ndarray]]], n: int,
               k: int, category_near=None) -> tuple[np.ndarray, np.ndarray]:
        """Category logits (n, k) and shortcoming logits (n, 2) of tokenized batches (positions,
        arrays); always float32, so ``category_near`` changes nothing here."""
        cat, sc = np.zeros((n, k), dtype=np.float32), np.zeros((n, 2), dtype=np.float32)
        for idx, enc in batches:
            t = {key: torch.from_numpy(v) for key, v in enc.items()}
            c, s = self.heads(t["input_ids"], t["attention_mask"], t.get("token_type_ids"))
            cat[idx], sc[idx] = c.float().numpy(), s.float().numpy()
        return cat, sc

    def save(self, out: Path) -> None:
        self.model.save_pretrained(out)
        save_shortcoming_head(self.shortcoming, out)


class BertClassifier:
    """Inference on a saved directory; batches sorted by length, padded to the longest in each.

    The network runs on a runtime: :class:`TorchRuntime`, or the ONNX Runtime one of
    :mod:`fazhi.models.onnx`; tokenizing, batching, calibration and labels are the same on both.
    """

    def __init__(self, runtime, tokenizer, meta: ModelMeta):
        self.runtime = runtime
        self.tokenizer = tokenizer
        self.meta = meta
        self.calibration = meta.get_calibration()
        self.max_length = meta.max_length
        self.name = meta.name or "bert"
        if not meta.labels:
            raise FazhiError(self.name, "the model's metadata names no labels")
        self.labels = list(meta.labels)

    @property
    def backend(self) -> str:
        return self.runtime.name

    @classmethod
    def load(cls, path: str | Path, backend: str = "torch") -> "BertClassifier":
        """The model saved in ``path`` on ``backend``: ``torch``, ``onnx`` (its export in
        ``path/onnx``: int8, float32 near decision boundaries), ``int8`` (the export's int8
        graph alone, never re-scored), ``float32`` (the export's float32 graph alone) or ``auto``
        (where a fresh export is there: ``onnx`` on a CPU with 8-bit dot-product instructions,
        ``float32`` on one known to have none, :func:`~fazhi.models.onnx.int8_pays`; else torch)."""
        from transformers import AutoConfig, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FazhiError(str(path), "not a model directory (no config.json)")
        if not (path / SC_HEAD).is_file():
            raise FazhiError(str(path), f"not a fazhi BERT model (no {SC_HEAD})")
        try:
            config = AutoConfig.from_pretrained(path)
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise FazhiError(str(path), f"cannot load the model: {str(err).splitlines()[0]}") from None
        meta = ModelMeta.read(path)
        # the label order is the network's: config.id2label of the saved category model
        meta = meta.model_copy(update={"labels": [config.id2label[i] for i in range(config.num_labels)],
                                       "name": meta.name or path.name})
        runtime = None
        if backend in ("auto", "onnx", "int8", "float32"):
            from fazhi.models.onnx import INT8, OnnxRuntime, int8_dot_flags, int8_pays

            prefer_int8 = backend in ("onnx", "int8") or (backend == "auto" and int8_pays(int8_dot_flags()))
            runtime, why = OnnxRuntime.load(path, meta.get_calibration().raw_threshold(), prefer_int8=prefer_int8,
                                            rescore=backend != "int8")
            if runtime is not None and backend == "int8" and runtime.file != INT8:
                runtime, why = None, f"the ONNX export in {path}/onnx has no int8 model (export it with --quantize smooth)"
            if runtime is None and backend != "auto":
                raise FazhiError(str(path), why)
            if runtime is None:
                sys.stderr.write(f"fazhi: notice: {why}; using torch\n")
        return cls(runtime or TorchRuntime.load(path), tokenizer, meta)

    def save(self, out: str | Path, **meta) -> Path:
        """Save as a Hugging Face directory with ``fazhi.json`` (``meta`` updates its fields), on either runtime."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.runtime.save(out)
        self.tokenizer.save_pretrained(out)
        self.meta.model_copy(update={"type": "bert", "name": self.name, "labels": self.labels,
                                     "max_length": self.max_length, "calibration": self.calibration.to_dict(),
                                     **meta}).write(out)
        return out

    def encode_batches(self, inputs: list[str], batch_size: int = 64) -> list[tuple[list[int], dict[str, np.ndarray]]]:
        """``inputs`` in :func:`length_batches` groups: each group's input positions and its
        tokenized int64 arrays (b, tokens), padded to its longest member."""
        batches = []
        for idx in length_batches([len(t) for t in inputs], batch_size):
            enc = self.tokenizer([inputs[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="np")
            enc = {k: v.astype(np.int64) for k, v in enc.items()}
            enc.setdefault("token_type_ids", np.zeros_like(enc["input_ids"]))
            batches.append((idx, enc))
        return batches

    def logits(self, inputs: list[str], batch_size: int = 64,
               category_near: CategoryNear | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Category logits (n, K) and shortcoming logits (n, 2), in input order; ``category_near``:
        the caller's test of which int8 rows to re-score for their category (positions, logits;
        see :meth:`~fazhi.models.onnx.OnnxRuntime.logits`).

        Inputs are sorted by length and each batch is padded only to its longest member,
        so short paragraphs do not pay for long ones.
        """
        return self.runtime.logits(self.encode_batches(inputs, batch_size), len(inputs), len(self.labels), category_near)

    def probabilities(self, texts: Sequence[str], heading_paths: HeadingPaths = None, batch_size: int = 64,
                      category_near: CategoryNear | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated category probabilities (n, K) in ``labels`` order and shortcoming
        probabilities (n,) of paragraphs with their heading paths (``category_near``: as in
        :meth:`logits`)."""
        inputs = [with_context(t, p) for t, p in zip(texts, check_inputs(texts, heading_paths))]
        if not inputs:
            return np.zeros((0, len(self.labels))), np.zeros(0)
        return self.calibration.probabilities(*self.logits(inputs, batch_size, category_near))

    def predict(self, texts: Sequence[str], heading_paths: HeadingPaths = None, batch_size: int = 64) -> list[Prediction]:
        """One :class:`Prediction` per text (see :class:`~fazhi.models.base.Classifier`)."""
        if not texts:
            check_inputs(texts, heading_paths)
            return []
        return predictions(*self.probabilities(texts, heading_paths, batch_size), self.labels,
                           self.calibration.shortcoming_threshold)


def length_batches(lengths: Sequence[int], batch_size: int, spread: float = 1.3,
                   max_chars: int = 1536) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted). A batch ends at ``batch_size``
    items, when the next item is more than ``spread`` times as long as its first, or when the
    batch would pass ``max_chars`` characters padded (items × longest).

    On a CPU every padded token costs as much as a real one, and activations of a big batch
    fall out of cache: about a thousand tokens per batch runs fastest on 2 cores.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    for i in order:
        last = batches[-1] if batches else None
        if (last and len(last) < batch_size and lengths[i] <= spread * lengths[last[0]] + 8
                and (len(last) + 1) * lengths[i] <= max_chars):
            last.append(i)
        else:
            batches.append([i])
    return batches


def predictions(cat_probs: np.ndarray, sc_probs: np.ndarray, labels: list[str],
                threshold: float = 0.5) -> list[Prediction]:
    """Turn probability arrays (n, K) and (n,) into :class:`Prediction` objects; a paragraph
    is a shortcoming when its probability is ≥ ``threshold``."""
    out = []
    for row, s in zip(cat_probs.tolist(), sc_probs.tolist()):
        best = max(range(len(row)), key=row.__getitem__)
        out.append(Prediction(labels[best], {l: round(p, 4) for l, p in zip(labels, row)}, s >= threshold,
                              round(s, 4)))
    return out
