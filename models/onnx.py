"""The fast CPU path: a saved BERT model exported to ONNX (optionally int8) and run with ONNX Runtime.

``export_onnx`` writes ``onnx/model.onnx`` (float32, both heads in one graph), with
``--quantize`` also ``onnx/model.int8.onnx`` (dynamic int8 quantization of the weights), and
``onnx/export.json`` recording a hash of the weights it came from. :func:`load_fast` returns an
:class:`OnnxClassifier` when a fresh, readable export is there, else None with the reason, so
the caller falls back to torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from fazhi.errors import FazhiError
from models.bert import SC_HEAD, BertClassifier, TwoHeads

ONNX_DIR = "onnx"
FP32, INT8 = "model.onnx", "model.int8.onnx"
EXPORT_INFO = "export.json"
OPSET = 17


def weights_digest(model_dir: str | Path) -> str:
    """SHA-256 over the weight files of a saved model (category model and shortcoming head)."""
    h = hashlib.sha256()
    for name in ("model.safetensors", SC_HEAD):
        with open(Path(model_dir) / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def export_onnx(model_dir: str | Path, quantize: str = "selective") -> Path:
    """Export ``model_dir`` to ``model_dir/onnx``; the same model gives byte-identical files.

    ``quantize``: ``selective`` (default) makes ``model.int8.onnx`` with int8 weights in the
    attention and first feed-forward layers only (labels as float32 on the shared reports);
    ``all`` quantizes every layer (faster, but moves some labels); ``none`` writes float32 only.
    """
    import tempfile

    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    if quantize not in ("selective", "all", "none"):
        raise FazhiError("--quantize", f"expected selective, all or none, got {quantize!r}")
    model_dir = Path(model_dir)
    clf = BertClassifier.load(model_dir)
    # eager attention exports as plain ops that ONNX Runtime's optimizer fuses into its Attention kernel
    clf.model.set_attn_implementation("eager")
    out = model_dir / ONNX_DIR
    out.mkdir(exist_ok=True)
    heads = TwoHeads(clf.model, clf.model.config.hidden_size, clf.shortcoming).eval()
    enc = clf.tokenizer(["依法行政", "建设法治政府，推进严格规范公正文明执法"], padding=True, return_tensors="pt")
    args = (enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids", torch.zeros_like(enc["input_ids"])))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        raw = str(Path(tmp) / "raw.onnx")
        # the TorchScript exporter: stable on BERT and deterministic, so exports are reproducible
        torch.onnx.export(heads, args, raw, dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=["category_logits", "shortcoming_logits"],
                          dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names},
                                        "category_logits": {0: "batch"}, "shortcoming_logits": {0: "batch"}})
        cfg = clf.model.config
        optimize_model(raw, model_type="bert", num_heads=cfg.num_attention_heads,
                       hidden_size=cfg.hidden_size).save_model_to_file(str(out / FP32))
    files = [FP32]
    if quantize != "none":
        nodes = [n.name for n in onnx.load(str(out / FP32)).graph.node if n.op_type in ("MatMul", "Attention")]
        if quantize == "selective":
            nodes = [n for n in nodes if n.startswith("Attention") or "intermediate" in n]
        quantize_dynamic(str(out / FP32), str(out / INT8), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_quantize=nodes, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        files.append(INT8)
    (out / EXPORT_INFO).write_text(json.dumps({"weights_sha256": weights_digest(model_dir), "opset": OPSET,
                                               "quantize": quantize, "files": files, "torch": torch.__version__},
                                              indent=2))
    return out


class OnnxClassifier(BertClassifier):
    """Same inputs, batching and outputs as :class:`BertClassifier`; the encoder runs in ONNX Runtime."""

    def __init__(self, session, tokenizer, labels: list[str], max_length: int, name: str, file: str):
        self.session = session
        self.tokenizer = tokenizer
        self.labels = labels
        self.max_length = max_length
        self.name = name
        self.backend = f"onnxruntime ({file})"
        self._inputs = {i.name for i in session.get_inputs()}

    def forward(self, enc: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        feed = {k: v for k, v in enc.items() if k in self._inputs}
        if "token_type_ids" in self._inputs and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(enc["input_ids"])
        cat, sc = self.session.run(["category_logits", "shortcoming_logits"], feed)
        return cat, sc


def load_fast(model_dir: str | Path, prefer_int8: bool = True) -> tuple[OnnxClassifier | None, str]:
    """``(classifier, "")`` from a fresh export in ``model_dir/onnx``, or ``(None, why not)``."""
    import onnxruntime as ort
    from transformers import AutoConfig, AutoTokenizer

    model_dir = Path(model_dir)
    out = model_dir / ONNX_DIR
    info_path = out / EXPORT_INFO
    if not info_path.is_file():
        return None, f"no ONNX export in {out} (run `fazhi models export-onnx --model {model_dir}`)"
    try:
        info = json.loads(info_path.read_text())
        if info.get("weights_sha256") != weights_digest(model_dir):
            return None, f"the ONNX export in {out} is older than the model's weights (export it again)"
        file = INT8 if prefer_int8 and INT8 in info.get("files", []) else FP32
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("FAZHI_THREADS", os.cpu_count() or 1))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(out / file), options, providers=["CPUExecutionProvider"])
        config = AutoConfig.from_pretrained(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except Exception as err:  # noqa: BLE001 - any unreadable export means: use torch
        return None, f"cannot use the ONNX export in {out}: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    meta = json.loads((model_dir / "fazhi.json").read_text()) if (model_dir / "fazhi.json").is_file() else {}
    labels = [config.id2label[i] for i in range(config.num_labels)]
    return OnnxClassifier(session, tokenizer, labels, meta.get("max_length", 256), meta.get("name", model_dir.name),
                          file), ""
