"""`fazhi bench` on a tiny model: every figure is there and consistent, and the chart renders."""

from __future__ import annotations

from typer.testing import CliRunner

from conftest import GOLD_DIR, REPORTS
from fazhi.cli import app
from fazhi.render import bench_chart
from fazhi.models.onnx import int8_dot_flags
from fazhi.training.bench import run_bench


def test_bench_figures_are_consistent_and_chart_renders(tiny_model):
    model_dir, _ = tiny_model
    r = run_bench(model_dir, REPORTS[:1], GOLD_DIR, n=40, progress=False)
    assert r["paragraphs"] == 40 and r["cpu_cores"] >= 1 and r["torch_threads"] >= 1
    assert r["pipeline_paragraphs_per_s"] == max(r["pipeline_batch1_paragraphs_per_s"],
                                                 r["pipeline_batch32_paragraphs_per_s"]) > 0
    # the same weights on both paths (this model has no ONNX export). The tiny model's top two categories
    # are within float noise of each other on some lines, so padding in a batch can flip one or two of
    # them; label agreement proper is tested on the release model (test_onnx).
    assert abs(r["macro_f1_delta"]) <= 0.1 and 0 <= r["fazhi_macro_f1"] <= 1
    assert r["pipeline_max_length"] == 64  # the tiny model's own input length, as fazhi reads it
    assert r["cpu_int8_dot_flags"] == int8_dot_flags()
    assert r["fazhi_rescored_share"] is None  # torch re-runs nothing (the ONNX count: test_onnx)
    sizes = [r["report_ms"][k]["paragraphs"] for k in ("1x", "4x", "16x")]
    assert sizes[0] > 0 and sizes[1] >= 4 * sizes[0] and sizes[2] >= 4 * sizes[1]
    assert all(v["ms"] > 0 for v in r["report_ms"].values()) and r["report_growth_16x_per_paragraph"] > 0
    png = bench_chart(r)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_bench_rejects_bad_input(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--paragraphs", "0"])
    assert result.exit_code != 0 and "--paragraphs" in result.output
    result = CliRunner().invoke(app, ["bench", str(tmp_path / "missing.txt"), "--model", str(tmp_path)])
    assert result.exit_code != 0


def test_int8_dot_flags_reads_x86_and_arm_cpuinfo():
    x86 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n"
    assert int8_dot_flags(x86) == ["avx512_vnni"]
    assert int8_dot_flags("flags\t\t: fpu sse2 avx avx2 fma f16c\n") == []  # AVX2 alone: no int8 dot product
    assert int8_dot_flags("Features\t: fp asimd asimddp i8mm sve\n") == ["asimddp", "i8mm"]
    assert int8_dot_flags("model name\t: something\n") is None  # no flags line: unknown, not "none"


def test_bench_cli_names_the_cpu_int8_instructions(tiny_model):
    model_dir, _ = tiny_model
    result = CliRunner().invoke(app, ["bench", str(REPORTS[0]), "--model", str(model_dir), "--gold", str(GOLD_DIR),
                                      "--paragraphs", "20"])
    assert result.exit_code == 0, result.output
    flags = int8_dot_flags()
    expected = "unknown" if flags is None else ", ".join(flags) or "none"
    assert f"CPU 8-bit dot-product instructions: {expected}" in result.output
    assert "speedup" in result.output and "macro-F1" in result.output
