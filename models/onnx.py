"""The fast CPU path: a saved BERT model exported to ONNX (optionally int8) and run with ONNX Runtime.

``export_onnx`` writes ``onnx/model.onnx`` (float32, both heads in one graph), with
``--quantize`` also ``onnx/model.int8.onnx`` (dynamic int8 quantization, by default after
SmoothQuant-style smoothing of the activations), and
``onnx/export.json`` recording a hash of the weights it came from. :func:`load_fast` returns an
:class:`OnnxClassifier` when a fresh, readable export is there, else None with the reason, so
the caller falls back to torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fazhi.errors import FazhiError
from fazhi.models.bert import SC_HEAD, BertClassifier, TwoHeads
from fazhi.models.calibration import Calibration, softmax

if TYPE_CHECKING:
    from onnx import ModelProto

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


CALIBRATION_REPORTS = 12  # synthetic reports whose paragraphs calibrate the smoothing (~400 inputs)
SMOOTH_ALPHA = 0.8  # how much of an activation channel's range moves into the weights (SmoothQuant's alpha)


def calibration_inputs(n_reports: int = CALIBRATION_REPORTS) -> list[str]:
    """Model inputs for calibration, deterministic: paragraphs of synthetic reports, alone and in context."""
    from fazhi.corpora import parse_text
    from fazhi.corpora.synthesis import generate_report
    from fazhi.models.base import document_inputs
    from fazhi.models.bert import with_context

    inputs = []
    for seed in range(n_reports):
        texts, paths = document_inputs(parse_text(generate_report(seed)))
        inputs += [with_context(t, p if i % 2 else None) for i, (t, p) in enumerate(zip(texts, paths))]
    return inputs


def smooth_activations(model: ModelProto, feeds: list[dict[str, np.ndarray]], alpha: float = SMOOTH_ALPHA) -> list[str]:
    """SmoothQuant on every dense layer of an ONNX BERT (in place); returns the smoothed MatMul names.

    Dynamic int8 quantizes an activation with one scale per tensor, so a few channels with a
    large range (after GELU above all) cost the rest their precision. Each input channel j is
    divided by s_j = max|x_j|^alpha / max|W_j|^(1-alpha) (a Mul node) and row j of the weight
    is multiplied by it: the same function in float, far less quantization error in int8.
    ``feeds`` are tokenized calibration batches; max|x_j| is taken over their real tokens.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    dense = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    probe = type(model)()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(n.input[0], TensorProto.FLOAT, None) for n in dense)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [n.input[0] for n in dense]
    inputs = [i.name for i in session.get_inputs()]
    x_max = [np.zeros(numpy_helper.to_array(weights[n.input[1]]).shape[0], np.float32) for n in dense]
    for feed in feeds:
        real = feed["attention_mask"].astype(bool)
        for k, act in enumerate(session.run(names, {i: feed[i] for i in inputs})):
            x_max[k] = np.maximum(x_max[k], np.abs(act[real]).max(axis=0))  # (b, tokens, in) → (in,)
    for node, xm in zip(dense, x_max):
        w = numpy_helper.to_array(weights[node.input[1]])  # (in, out): y = x @ w
        s = (np.maximum(xm, 1e-5) ** alpha / np.maximum(np.abs(w).max(axis=1), 1e-5) ** (1 - alpha)).astype(np.float32)
        weights[node.input[1]].CopyFrom(numpy_helper.from_array(w * s[:, None], node.input[1]))
        graph.initializer.append(numpy_helper.from_array(1 / s, f"{node.name}/smooth"))
        mul = helper.make_node("Mul", [node.input[0], f"{node.name}/smooth"], [f"{node.name}/smoothed"],
                               name=f"{node.name}/Smooth")
        node.input[0] = f"{node.name}/smoothed"
        graph.node.insert(list(graph.node).index(node), mul)
    return [n.name for n in dense]


def export_onnx(model_dir: str | Path, quantize: str = "smooth") -> Path:
    """Export ``model_dir`` to ``model_dir/onnx``; the same model gives byte-identical files.

    ``quantize``: ``smooth`` (default) makes ``model.int8.onnx`` with int8 weights in every
    layer after :func:`smooth_activations` (calibrated on synthetic reports); ``all`` quantizes
    every layer without smoothing (moves more labels); ``none`` writes float32 only.
    """
    import tempfile

    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    if quantize not in ("smooth", "all", "none"):
        raise FazhiError("--quantize", f"expected smooth, all or none, got {quantize!r}")
    model_dir = Path(model_dir)
    clf = BertClassifier.load(model_dir)
    # eager attention exports as plain ops that ONNX Runtime's optimizer fuses into its Attention kernel
    clf.model.set_attn_implementation("eager")
    out = model_dir / ONNX_DIR
    out.mkdir(exist_ok=True)
    heads = TwoHeads(clf.model, clf.shortcoming).eval()
    enc = clf.tokenizer(["依法行政", "建设法治政府，推进严格规范公正文明执法"], padding=True, return_tensors="pt")
    args = (enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids", torch.zeros_like(enc["input_ids"])))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    files = [FP32]
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        raw = str(Path(tmp) / "raw.onnx")
        # the TorchScript exporter: stable on BERT and deterministic, so exports are reproducible
        torch.onnx.export(heads, args, raw, dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=["category_logits", "shortcoming_logits"],
                          dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names},
                                        "category_logits": {0: "batch"}, "shortcoming_logits": {0: "batch"}})
        cfg = clf.model.config
        optimized = optimize_model(raw, model_type="bert", num_heads=cfg.num_attention_heads,
                                   hidden_size=cfg.hidden_size)
        optimized.save_model_to_file(str(out / FP32))
        if quantize != "none":
            model = optimized.model
            if quantize == "smooth":
                smooth_activations(model, [enc for _, enc in clf.encode_batches(calibration_inputs())])
            source = str(Path(tmp) / "for_int8.onnx")
            onnx.save(model, source)
            nodes = [n.name for n in model.graph.node if n.op_type in ("MatMul", "Attention")]
            quantize_dynamic(source, str(out / INT8), weight_type=QuantType.QInt8, per_channel=True,
                             nodes_to_quantize=nodes, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            files.append(INT8)
    (out / EXPORT_INFO).write_text(json.dumps({"weights_sha256": weights_digest(model_dir), "opset": OPSET,
                                               "quantize": quantize, "files": files, "torch": torch.__version__},
                                              indent=2))
    return out


# int8 decides only clear cases: a label whose top two probabilities lie closer than this is
# re-scored in float32. On the silver validation split int8 moved a probability by up to 0.39;
# at 0.4, 3.5% of inputs were re-scored and every label equalled float32's (0.25: 1.4%, one differed)
RESCORE_MARGIN = 0.4


def top_two_gap(logits: np.ndarray) -> np.ndarray:
    """Per row of logits (n, K), the first minus the second highest probability (n,)."""
    top = np.sort(softmax(logits), axis=-1)
    return top[:, -1] - top[:, -2]


def near_boundary(cat: np.ndarray, sc: np.ndarray, margin: float = RESCORE_MARGIN,
                  sc_threshold: float = 0.5) -> np.ndarray:
    """Rows (n,) whose category logits (n, K) give top-two probabilities less than ``margin``
    apart, or whose shortcoming logits (n, 2) give a probability within ``margin / 2`` of
    ``sc_threshold`` (both uncalibrated; at 0.5 the same top-two gap)."""
    return (top_two_gap(cat) < margin) | (np.abs(softmax(sc)[:, 1] - sc_threshold) < margin / 2)


class OnnxClassifier(BertClassifier):
    """Same inputs, batching and outputs as :class:`BertClassifier`; the encoder runs in ONNX Runtime.

    With ``exact`` (the float32 session beside an int8 one), inputs whose int8 labels are
    near a decision boundary (:func:`near_boundary`) are run again in float32.
    """

    def __init__(self, session, tokenizer, labels: list[str], max_length: int, name: str, file: str, exact=None,
                 calibration: Calibration | None = None):
        self.calibration = calibration or Calibration()
        self.session = session
        self.exact = exact
        self.margin = RESCORE_MARGIN
        self.tokenizer = tokenizer
        self.labels = labels
        self.max_length = max_length
        self.name = name
        self.backend = f"onnxruntime ({file}{', float32 near boundaries' if exact else ''})"
        self._inputs = {i.name for i in session.get_inputs()}

    def forward(self, enc: dict[str, np.ndarray], session=None) -> tuple[np.ndarray, np.ndarray]:
        feed = {k: v for k, v in enc.items() if k in self._inputs}
        cat, sc = (session or self.session).run(["category_logits", "shortcoming_logits"], feed)
        return cat, sc

    def logits(self, inputs: list[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        cat, sc = super().logits(inputs, batch_size)
        if self.exact is not None:
            near = np.flatnonzero(near_boundary(cat, sc, self.margin, self.calibration.raw_threshold()))
            for idx, enc in self.encode_batches([inputs[i] for i in near], batch_size):
                cat[near[idx]], sc[near[idx]] = self.forward(enc, self.exact)
        return cat, sc


def load_fast(model_dir: str | Path, prefer_int8: bool = True,
              rescore: bool = True) -> tuple[OnnxClassifier | None, str]:
    """``(classifier, "")`` from a fresh export in ``model_dir/onnx``, or ``(None, why not)``.

    ``rescore``: with int8, re-score near-boundary inputs in float32 (see :class:`OnnxClassifier`).
    """
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
        exact = ort.InferenceSession(str(out / FP32), options, providers=["CPUExecutionProvider"]) \
            if file == INT8 and rescore else None
        config = AutoConfig.from_pretrained(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except Exception as err:  # noqa: BLE001 - any unreadable export means: use torch
        return None, f"cannot use the ONNX export in {out}: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    meta = json.loads((model_dir / "fazhi.json").read_text()) if (model_dir / "fazhi.json").is_file() else {}
    labels = [config.id2label[i] for i in range(config.num_labels)]
    return OnnxClassifier(session, tokenizer, labels, meta.get("max_length", 256), meta.get("name", model_dir.name),
                          file, exact, Calibration.from_meta(meta)), ""
