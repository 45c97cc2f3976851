"""The fast CPU path: a saved BERT model exported to ONNX (optionally int8) and run with ONNX Runtime.

``export_onnx`` writes ``onnx/model.onnx`` (float32, both heads in one graph), with
``--quantize`` also ``onnx/model.int8.onnx`` (dynamic int8 quantization, by default after
SmoothQuant-style smoothing of the activations), and
``onnx/export.json`` recording a hash of the weights it came from (written by
:mod:`fazhi.training.export`). :meth:`OnnxRuntime.load` opens a fresh, readable export, else
says why not, so the caller falls back to torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from fazhi.models.meta import SC_HEAD
from fazhi.models.calibration import softmax

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


# ONNX Runtime's int8 matrix kernels outrun float32 mainly on CPUs with 8-bit dot-product instructions
# (x86 VNNI and AMX, Arm dotprod and i8mm); without them the int8 graph runs at about float32's speed, so
# the fast path's lead over the pipeline depends on the machine and the ``auto`` backend runs float32
# there (docs/benchmarks.md: on AVX2 alone the int8 graph and re-scoring cost more than they save)
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def int8_dot_flags(cpuinfo: str | None = None) -> list[str] | None:
    """The CPU's 8-bit dot-product instruction flags (sorted, of :data:`INT8_DOT_FLAGS`) named in
    ``cpuinfo`` (the text of /proc/cpuinfo; read from there when None), or None where no flags
    can be read (no /proc/cpuinfo, or no ``flags``/``Features`` line in it)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    seen: set[str] | None = None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            seen = (seen or set()) | set(value.split())
    return None if seen is None else sorted(seen.intersection(INT8_DOT_FLAGS))


def int8_pays(flags: list[str] | None) -> bool:
    """Whether the int8 graph is worth running on a CPU with these :func:`int8_dot_flags`: yes
    unless the CPU is known to have none of them (unknown flags keep int8, the exported default)."""
    return flags != []


# int8 decides only clear cases: a label whose top two probabilities lie closer than this is
# re-scored in float32. On the silver validation split int8 moved a probability by up to 0.39;
# at 0.4, 3.5% of inputs were re-scored and every label equalled float32's (0.25: 1.4%, one differed)
RESCORE_MARGIN = 0.4


def probability_gap(probs: np.ndarray) -> np.ndarray:
    """Per row of probabilities (n, K), the first minus the second highest (n,)."""
    top = np.sort(probs, axis=-1)
    return top[:, -1] - top[:, -2]


def top_two_gap(logits: np.ndarray) -> np.ndarray:
    """Per row of logits (n, K), the first minus the second highest probability (n,)."""
    return probability_gap(softmax(logits))


def near_boundary(cat: np.ndarray, sc: np.ndarray, margin: float = RESCORE_MARGIN,
                  sc_threshold: float = 0.5) -> np.ndarray:
    """Rows (n,) whose category logits (n, K) give top-two probabilities less than ``margin``
    apart, or whose shortcoming logits (n, 2) give a probability within ``margin / 2`` of
    ``sc_threshold`` (both uncalibrated; at 0.5 the same top-two gap)."""
    return (top_two_gap(cat) < margin) | shortcoming_near(sc, margin, sc_threshold)


def shortcoming_near(sc: np.ndarray, margin: float = RESCORE_MARGIN, sc_threshold: float = 0.5) -> np.ndarray:
    """Rows (n,) whose shortcoming logits (n, 2) give a probability within ``margin / 2`` of ``sc_threshold``."""
    return np.abs(softmax(sc)[:, 1] - sc_threshold) < margin / 2


# Who decides the category from the logits says when it is near a tie: (positions (b,),
# category logits (b, K)) → rows to re-score (b,) bool
CategoryNear = Callable[[np.ndarray, np.ndarray], np.ndarray]


class OnnxRuntime:
    """Runs the exported two-head graph in ONNX Runtime.

    With ``exact`` (the float32 session beside an int8 one), inputs whose int8 labels are
    near a decision boundary (:func:`near_boundary`, at the raw shortcoming threshold
    ``sc_threshold``) are run again in float32; a caller that mixes the category logits into
    its own decision (a blend) passes its own category test (:data:`CategoryNear`).
    """

    def __init__(self, session, source: Path, file: str, exact=None, sc_threshold: float = 0.5):
        self.session, self.exact, self.source, self.file = session, exact, source, file
        self.margin = RESCORE_MARGIN
        self.sc_threshold = sc_threshold
        self.rows = {"scored": 0, "rescored": 0}  # inputs run so far, and of them re-run in float32
        self.name = f"onnxruntime ({file}{', float32 near boundaries' if exact else ''})"
        self._inputs = {i.name for i in session.get_inputs()}

    @classmethod
    def load(cls, model_dir: str | Path, sc_threshold: float = 0.5, prefer_int8: bool = True,
             rescore: bool = True) -> tuple["OnnxRuntime | None", str]:
        """``(runtime, "")`` from a fresh export in ``model_dir/onnx``, or ``(None, why not)``.

        ``rescore``: with int8, re-score near-boundary inputs in float32.
        """
        import onnxruntime as ort

        from fazhi.settings import settings

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
            options.intra_op_num_threads = settings().threads or os.cpu_count() or 1
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(str(out / file), options, providers=["CPUExecutionProvider"])
            exact = ort.InferenceSession(str(out / FP32), options, providers=["CPUExecutionProvider"]) \
                if file == INT8 and rescore else None
        except Exception as err:  # noqa: BLE001 - any unreadable export means: use torch
            return None, f"cannot use the ONNX export in {out}: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        return cls(session, model_dir, file, exact, sc_threshold), ""

    def _run(self, enc: dict[str, np.ndarray], session) -> tuple[np.ndarray, np.ndarray]:
        cat, sc = session.run(["category_logits", "shortcoming_logits"], {k: v for k, v in enc.items() if k in self._inputs})
        return cat, sc

    def logits(self, batches: list[tuple[list[int], dict[str, np.ndarray]]], n: int,
               k: int, category_near: CategoryNear | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Category logits (n, k) and shortcoming logits (n, 2) of tokenized batches (positions,
        arrays); ``category_near``: which int8 rows to re-score for their category, instead of
        the logits' own top-two gap (the shortcoming's test is always this runtime's)."""
        cat, sc = np.zeros((n, k), dtype=np.float32), np.zeros((n, 2), dtype=np.float32)
        for idx, enc in batches:
            c, s = self._run(enc, self.session)
            if self.exact is not None:
                near = near_boundary(c, s, self.margin, self.sc_threshold) if category_near is None else \
                    category_near(np.asarray(idx), c) | shortcoming_near(s, self.margin, self.sc_threshold)
                near = np.flatnonzero(near)
                if len(near):  # the same padded rows again: attention masks make padding inert
                    c[near], s[near] = self._run({key: v[near] for key, v in enc.items()}, self.exact)
                self.rows["rescored"] += len(near)
            self.rows["scored"] += len(idx)
            cat[idx], sc[idx] = c, s
        return cat, sc

    def save(self, out: Path) -> None:
        """Copy the directory the export came from (weights, export), so the copy loads on either runtime."""
        import shutil

        if Path(out).resolve() != self.source.resolve():
            shutil.copytree(self.source, out, dirs_exist_ok=True)
