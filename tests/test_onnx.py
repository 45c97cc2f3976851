"""The ONNX Runtime fast path: same labels as torch, reproducible export, clean fallback."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import REPORTS
from fazhi.corpora import read_document
from fazhi.errors import FazhiError
from fazhi.models.base import document_inputs
from fazhi.models.registry import load_classifier
from fazhi.models.bert import BertClassifier, with_context
from fazhi.models.onnx import EXPORT_INFO, FP32, INT8, ONNX_DIR, OnnxRuntime, near_boundary, top_two_gap
from fazhi.training.export import export_onnx

pytestmark = pytest.mark.slow


def report_inputs():
    texts, paths = [], []
    for report in REPORTS:
        t, p = document_inputs(read_document(report))
        texts += t
        paths += p
    return texts, paths


def onnx_classifier(model_dir, **options) -> BertClassifier:
    """The model of ``model_dir`` on an ONNX runtime opened with ``options``."""
    clf = BertClassifier.load(model_dir)
    runtime, why = OnnxRuntime.load(model_dir, clf.calibration.raw_threshold(), **options)
    assert runtime is not None, why
    clf.runtime = runtime
    return clf


@pytest.fixture(scope="module")
def exported(tiny_onnx):
    return tiny_onnx


def test_export_is_reproducible(exported, tmp_path):
    again = tmp_path / "again"
    shutil.copytree(exported, again, ignore=shutil.ignore_patterns(ONNX_DIR))
    export_onnx(again)
    for name in (FP32, INT8):
        assert (again / ONNX_DIR / name).read_bytes() == (exported / ONNX_DIR / name).read_bytes(), name


def test_real_paragraphs_join_the_smoothing_calibration(exported, tmp_path):
    """--calibrate-on adds a seeded sample of each source's paragraphs to the synthetic
    reports: the int8 graph changes, the float32 one does not, export.json names the sources."""
    from typer.testing import CliRunner

    from fazhi.cli import app
    from fazhi.corpora.unlabeled import unlabeled_paragraphs
    from fazhi.training.export import calibration_inputs

    synthetic = calibration_inputs(2)
    real = calibration_inputs(2, REPORTS, per_source=5)
    assert real[:len(synthetic)] == synthetic
    assert real[len(synthetic):] == unlabeled_paragraphs(REPORTS, max_per_source=5) and len(real) == len(synthetic) + 15
    again = tmp_path / "again"
    shutil.copytree(exported, again, ignore=shutil.ignore_patterns(ONNX_DIR))
    done = CliRunner().invoke(app, ["models", "export-onnx", "--model", str(again),
                                    *[a for r in REPORTS for a in ("--calibrate-on", str(r))]])
    assert done.exit_code == 0, done.output
    info = json.loads((again / ONNX_DIR / EXPORT_INFO).read_text())
    assert info["calibration"]["sources"] == [str(r) for r in REPORTS] and info["calibration"]["inputs"] > 0
    assert (again / ONNX_DIR / FP32).read_bytes() == (exported / ONNX_DIR / FP32).read_bytes()
    assert (again / ONNX_DIR / INT8).read_bytes() != (exported / ONNX_DIR / INT8).read_bytes()
    before = (again / ONNX_DIR / INT8).read_bytes()
    done = CliRunner().invoke(app, ["models", "export-onnx", "--model", str(again), "--calibrate-on",
                                    str(tmp_path / "missing")])
    assert done.exit_code == 2 and "missing" in done.output
    assert (again / ONNX_DIR / INT8).read_bytes() == before  # a bad source stops the export before it writes


def test_smoothing_keeps_the_float_model_and_calibrates_every_dense_layer(exported):
    """Smoothing moves activation range into the weights: in float the outputs stay the same."""
    import onnx
    import onnxruntime as ort

    from fazhi.training.export import calibration_inputs, smooth_activations

    clf = BertClassifier.load(exported)
    feeds = [enc for _, enc in clf.encode_batches(calibration_inputs(2))]
    model = onnx.load(str(exported / ONNX_DIR / FP32))
    dense = [n.name for n in model.graph.node if n.op_type == "MatMul"]
    assert sorted(smooth_activations(model, feeds)) == sorted(dense) and dense
    texts, _ = report_inputs()
    _, feed = clf.encode_batches(texts)[-1]
    plain = ort.InferenceSession(str(exported / ONNX_DIR / FP32)).run(None, feed)
    smoothed = ort.InferenceSession(model.SerializeToString()).run(None, feed)
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(plain, smoothed))


def test_float_export_matches_torch(exported):
    texts, paths = report_inputs()
    fast = onnx_classifier(exported, prefer_int8=False)
    slow = BertClassifier.load(exported)
    cat_fast, sc_fast = fast.logits(texts)
    cat_slow, sc_slow = slow.logits(texts)
    assert np.allclose(cat_fast, cat_slow, atol=1e-4) and np.allclose(sc_fast, sc_slow, atol=1e-4)


def test_int8_rescores_near_boundary_inputs_in_float32(exported):
    texts, paths = report_inputs()
    inputs = [with_context(t, p) for t, p in zip(texts, paths)]
    plain = onnx_classifier(exported, rescore=False)
    exact = onnx_classifier(exported, prefer_int8=False)
    hybrid = onnx_classifier(exported)
    assert INT8 in hybrid.backend and "float32 near boundaries" in hybrid.backend and hybrid.runtime.exact is not None
    cq, sq = plain.logits(inputs)
    cf, sf = exact.logits(inputs)
    # a margin between the tiny model's top-two gaps, so that some inputs are re-scored and some not
    hybrid.runtime.margin = float(np.median(np.minimum(top_two_gap(cq), top_two_gap(sq))))
    ch, sh = hybrid.logits(inputs)
    near = near_boundary(cq, sq, hybrid.runtime.margin)
    assert near.any() and not near.all()
    assert np.allclose(ch[near], cf[near], atol=1e-5) and np.allclose(sh[near], sf[near], atol=1e-5)
    assert np.array_equal(ch[~near], cq[~near]) and np.array_equal(sh[~near], sq[~near])
    assert near_boundary(np.array([[2.0, 0.0], [0.1, 0.0]]), np.array([[0.0, 3.0], [0.0, 3.0]])).tolist() == [False, True]


def test_a_callers_category_test_chooses_the_rows_re_scored(exported):
    """``category_near`` (a blend's test) replaces the logits' own top-two gap; it gets each
    row's input position, so it can read its own per-row figures."""
    texts, paths = report_inputs()
    inputs = [with_context(t, p) for t, p in zip(texts, paths)]
    cq, sq = onnx_classifier(exported, rescore=False).logits(inputs)
    cf, sf = onnx_classifier(exported, prefer_int8=False).logits(inputs)
    hybrid = onnx_classifier(exported)
    hybrid.runtime.margin = 0.0  # no row is near the shortcoming threshold: only the caller's test counts
    seen = []

    def even(idx: np.ndarray, cat: np.ndarray) -> np.ndarray:
        seen.extend(idx.tolist())
        assert np.array_equal(cat, cq[idx])  # the int8 logits of exactly those inputs
        return idx % 2 == 0

    ch, sh = hybrid.logits(inputs, category_near=even)
    assert sorted(seen) == list(range(len(inputs)))
    chosen = np.arange(len(inputs)) % 2 == 0
    assert np.allclose(ch[chosen], cf[chosen], atol=1e-5) and np.allclose(sh[chosen], sf[chosen], atol=1e-5)
    assert np.array_equal(ch[~chosen], cq[~chosen]) and np.array_equal(sh[~chosen], sq[~chosen])
    assert hybrid.runtime.rows == {"scored": len(inputs), "rescored": int(chosen.sum())}  # what the bench reports


def test_release_fast_path_gives_the_torch_labels(monkeypatch):
    """The `onnx` path (int8, float32 near boundaries) against torch on every paragraph of
    the shared reports: the same labels (int8 alone moved 2 of 86
    categories); probabilities within 0.25 (measured at most 0.12). The encoder alone; the blend
    is checked below."""
    monkeypatch.setenv("FAZHI_BACKEND", "onnx")  # what `auto` runs on a CPU with int8 dot products
    fast = load_classifier(None, blend=False)
    assert isinstance(fast.runtime, OnnxRuntime) and INT8 in fast.backend, "make setup exports the release model to ONNX"
    monkeypatch.setenv("FAZHI_BACKEND", "torch")
    slow = load_classifier(None, blend=False)
    texts, paths = report_inputs()
    a, b = fast.predict(texts, paths), slow.predict(texts, paths)
    assert [x.category for x in a] == [y.category for y in b]
    assert [x.shortcoming for x in a] == [y.shortcoming for y in b]
    assert max(abs(x.scores[k] - y.scores[k]) for x, y in zip(a, b) for k in x.scores) < 0.25



def test_the_blended_release_gives_the_torch_labels_on_the_fast_path(monkeypatch):
    """The blend re-scores its own near-ties in float32: where the encoder is sure but the blend
    is close, int8 drift would otherwise move the category (3 of 582 annotated/dev inputs)."""
    from fazhi.models.blend import BlendClassifier

    monkeypatch.setenv("FAZHI_BACKEND", "onnx")
    fast = load_classifier(None)
    assert isinstance(fast, BlendClassifier) and fast.encoder.runtime.exact is not None
    monkeypatch.setenv("FAZHI_BACKEND", "torch")
    slow = load_classifier(None)
    texts, paths = report_inputs()
    a, b = fast.predict(texts, paths), slow.predict(texts, paths)
    assert [x.category for x in a] == [y.category for y in b]
    assert [x.shortcoming for x in a] == [y.shortcoming for y in b]
    assert max(abs(x.scores[k] - y.scores[k]) for x, y in zip(a, b) for k in x.scores) < 0.1

def test_missing_corrupt_or_stale_export_falls_back_to_torch(exported, tmp_path, capsys, monkeypatch):
    model_dir = tmp_path / "m"
    shutil.copytree(exported, model_dir)
    assert isinstance(load_classifier(str(model_dir)).runtime, OnnxRuntime)

    (model_dir / ONNX_DIR / FP32).write_bytes(b"not an onnx model")  # read by both of auto's ONNX paths
    clf = load_classifier(str(model_dir))
    assert clf.backend == "torch" and clf.predict(["依法行政"])[0].category in clf.labels
    assert "cannot use the ONNX export" in capsys.readouterr().err

    info = model_dir / ONNX_DIR / EXPORT_INFO
    info.write_text(info.read_text().replace('"weights_sha256": "', '"weights_sha256": "0'))
    assert load_classifier(str(model_dir)).backend == "torch"
    assert "older than the model's weights" in capsys.readouterr().err

    shutil.rmtree(model_dir / ONNX_DIR)
    assert load_classifier(str(model_dir)).backend == "torch"
    assert "no ONNX export" in capsys.readouterr().err

    monkeypatch.setenv("FAZHI_BACKEND", "onnx")
    with pytest.raises(FazhiError, match="no ONNX export"):
        load_classifier(str(model_dir))
    monkeypatch.setenv("FAZHI_BACKEND", "torch")
    assert load_classifier(str(exported)).backend == "torch"


def test_int8_backend_runs_the_int8_graph_alone(exported, tmp_path, monkeypatch):
    """FAZHI_BACKEND=int8: the int8 graph and nothing else, the same logits as int8 without
    re-scoring; an export without int8 is a clear error, not a silent float32 run."""
    monkeypatch.setenv("FAZHI_BACKEND", "int8")
    clf = load_classifier(str(exported))
    assert clf.runtime.exact is None and clf.runtime.file == INT8 and "near boundaries" not in clf.backend
    texts, _ = report_inputs()
    plain = onnx_classifier(exported, rescore=False)
    assert np.array_equal(clf.logits(texts)[0], plain.logits(texts)[0])
    model_dir = tmp_path / "m"
    shutil.copytree(exported, model_dir, ignore=shutil.ignore_patterns(ONNX_DIR))
    export_onnx(model_dir, quantize="none", calibrate_on=REPORTS)
    # nothing was smoothed, so export.json names no calibration source
    assert json.loads((model_dir / ONNX_DIR / EXPORT_INFO).read_text())["calibration"] == {"sources": [], "inputs": 0}
    with pytest.raises(FazhiError, match="has no int8 model"):
        load_classifier(str(model_dir))
    monkeypatch.setenv("FAZHI_BACKEND", "onnx")
    assert load_classifier(str(model_dir)).runtime.file == FP32


def test_auto_runs_float32_alone_on_a_cpu_without_int8_dot_products(exported, monkeypatch):
    """``auto`` follows the CPU: int8 with float32 re-scoring where it has 8-bit dot-product
    instructions or they cannot be read, the float32 graph alone (torch's logits) where it has none;
    ``FAZHI_BACKEND=float32`` asks for that graph anywhere."""
    import fazhi.models.onnx as onnx_module

    for flags, file, exact in ((["avx512_vnni"], INT8, True), (None, INT8, True), ([], FP32, False)):
        monkeypatch.setattr(onnx_module, "int8_dot_flags", lambda flags=flags: flags)
        clf = load_classifier(str(exported), blend=False)
        assert clf.runtime.file == file and (clf.runtime.exact is not None) == exact, flags
    monkeypatch.setenv("FAZHI_BACKEND", "float32")
    monkeypatch.setattr(onnx_module, "int8_dot_flags", lambda: ["avx512_vnni"])
    clf = load_classifier(str(exported), blend=False)
    assert clf.runtime.file == FP32 and clf.runtime.exact is None and clf.backend == f"onnxruntime ({FP32})"
    texts, _ = report_inputs()
    assert np.allclose(clf.logits(texts)[0], BertClassifier.load(exported).logits(texts)[0], atol=1e-4)


def test_bad_quantize_option(exported):
    with pytest.raises(FazhiError, match="--quantize"):
        export_onnx(exported, quantize="int4")
