"""Export a saved BERT model to ONNX for the fast CPU path (:mod:`fazhi.models.onnx` runs it).

``export_onnx`` writes ``onnx/model.onnx`` (float32, both heads in one graph), with
``--quantize`` also ``onnx/model.int8.onnx`` (dynamic int8 quantization, by default after
SmoothQuant-style smoothing of the activations, calibrated on synthetic reports), and
``onnx/export.json`` recording a hash of the weights it came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from fazhi.errors import FazhiError
from fazhi.models.bert import BertClassifier, TwoHeads, with_context
from fazhi.models.onnx import EXPORT_INFO, FP32, INT8, ONNX_DIR, OPSET, weights_digest

if TYPE_CHECKING:
    from onnx import ModelProto

CALIBRATION_REPORTS = 12  # synthetic reports whose paragraphs calibrate the smoothing (~400 inputs)
# paragraphs of each real source added to them: on real text the synthetic reports alone set the
# channel ranges too narrow (docs/experiments.md); 150 of each of six sources is ~900 more inputs
CALIBRATION_PER_SOURCE = 150
SMOOTH_ALPHA = 0.8  # how much of an activation channel's range moves into the weights (SmoothQuant's alpha)


def calibration_inputs(n_reports: int = CALIBRATION_REPORTS, sources: Sequence[str | Path] = (),
                       per_source: int = CALIBRATION_PER_SOURCE) -> list[str]:
    """Model inputs for calibration, deterministic: paragraphs of ``n_reports`` synthetic reports,
    alone and in context, then a seeded sample of ``per_source`` paragraphs of each of ``sources``
    (anything :func:`~fazhi.corpora.unlabeled.unlabeled_paragraphs` reads), alone."""
    from fazhi.corpora import parse_text
    from fazhi.corpora.synthesis import generate_report
    from fazhi.corpora.unlabeled import unlabeled_paragraphs
    from fazhi.models.base import document_inputs

    inputs = []
    for seed in range(n_reports):
        texts, paths = document_inputs(parse_text(generate_report(seed)))
        inputs += [with_context(t, p if i % 2 else None) for i, (t, p) in enumerate(zip(texts, paths))]
    if sources:
        inputs += unlabeled_paragraphs(sources, max_per_source=per_source)
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


def export_onnx(model_dir: str | Path, quantize: str = "smooth", calibrate_on: Sequence[str | Path] = ()) -> Path:
    """Export ``model_dir`` to ``model_dir/onnx``; the same model and sources give byte-identical files.

    ``quantize``: ``smooth`` (default) makes ``model.int8.onnx`` with int8 weights in every
    layer after :func:`smooth_activations`, calibrated on :func:`calibration_inputs` (synthetic
    reports and a sample of each source in ``calibrate_on``); ``all`` quantizes every layer
    without smoothing (moves more labels); ``none`` writes float32 only.
    """
    import tempfile

    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    if quantize not in ("smooth", "all", "none"):
        raise FazhiError("--quantize", f"expected smooth, all or none, got {quantize!r}")
    model_dir = Path(model_dir)
    calibration = calibration_inputs(sources=calibrate_on) if quantize == "smooth" else []
    clf = BertClassifier.load(model_dir)
    # eager attention exports as plain ops that ONNX Runtime's optimizer fuses into its Attention kernel
    clf.runtime.model.set_attn_implementation("eager")
    out = model_dir / ONNX_DIR
    out.mkdir(exist_ok=True)
    heads = TwoHeads(clf.runtime.model, clf.runtime.shortcoming).eval()
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
        cfg = clf.runtime.model.config
        optimized = optimize_model(raw, model_type="bert", num_heads=cfg.num_attention_heads,
                                   hidden_size=cfg.hidden_size)
        optimized.save_model_to_file(str(out / FP32))
        if quantize != "none":
            model = optimized.model
            if quantize == "smooth":
                smooth_activations(model, [enc for _, enc in clf.encode_batches(calibration)])
            source = str(Path(tmp) / "for_int8.onnx")
            onnx.save(model, source)
            nodes = [n.name for n in model.graph.node if n.op_type in ("MatMul", "Attention")]
            quantize_dynamic(source, str(out / INT8), weight_type=QuantType.QInt8, per_channel=True,
                             nodes_to_quantize=nodes, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            files.append(INT8)
    (out / EXPORT_INFO).write_text(json.dumps({"weights_sha256": weights_digest(model_dir), "opset": OPSET,
                                               "quantize": quantize, "files": files, "torch": torch.__version__,
                                               "calibration": {"sources": [str(p) for p in calibrate_on] if calibration else [],
                                                               "inputs": len(calibration)}},
                                              indent=2))
    return out
