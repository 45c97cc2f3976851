"""`fazhi tag-many` on both engines, its output formats, and `fazhi store import` into both stores."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPORTS, write_docx
from fazhi.batch import read_rows, tag_many
from fazhi.corpora.synthesis import write_reports
from fazhi.serving.database import open_store
from fazhi.serving.store import ParagraphQuery


def fazhi(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fazhi.cli", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three real reports, three generated ones (one of them as .docx, in a subfolder) and two bad files."""
    root = tmp_path_factory.mktemp("reports")
    for report in REPORTS:
        shutil.copy(report, root / report.name)
    generated = write_reports(root / "generated", 3, seed=3)
    write_docx(generated[0].read_text(encoding="utf-8"), generated[0].with_suffix(".docx"))
    generated[0].unlink()
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 no more")
    (root / "furniture.txt").write_text("第 1 页\n", encoding="utf-8")  # nothing but page furniture
    return root


@pytest.fixture(scope="module")
def local_jsonl(folder, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("local-jsonl")
    return out, tag_many(str(folder), out, model=str(tiny_model[0]), fmt="jsonl", progress=False)


@pytest.mark.slow
def test_a_bad_file_is_a_failure_with_its_reason_and_the_rest_is_tagged(local_jsonl, folder):
    out, summary = local_jsonl
    assert (summary.files, summary.reports) == (8, 6)
    assert sorted(f["file"] for f in summary.failures) == ["broken.pdf", "furniture.txt"]
    assert all(f["reason"].startswith(f["file"]) for f in summary.failures)
    reports, paragraphs = read_rows(out / "reports.jsonl"), read_rows(out / "paragraphs.jsonl")
    assert [r["file"] for r in reports] == sorted(r["file"] for r in reports)  # input order
    assert "generated/synthetic_000.docx" in {r["file"] for r in reports}
    assert len(paragraphs) == summary.paragraphs == sum(r["paragraphs"] for r in reports)
    first = [p for p in paragraphs if p["report"] == reports[0]["report"]]
    assert [p["position"] for p in first] == list(range(len(first))) and first[0]["heading_path"] is not None
    assert reports[0]["digest"]["summary"] and json.loads((out / "summary.json").read_text())["reports"] == 6


@pytest.mark.slow
def test_the_ray_engine_writes_the_same_rows_as_the_local_one(local_jsonl, folder, tiny_model, tmp_path):
    ray_out, local_out = tmp_path / "ray", tmp_path / "local"
    ray = tag_many(str(folder), ray_out, model=str(tiny_model[0]), fmt="parquet", engine="ray", workers=2,
                   progress=False)
    local = tag_many(str(folder), local_out, model=str(tiny_model[0]), fmt="parquet", progress=False)
    assert (ray.engine, ray.workers, ray.reports, ray.failures) == ("ray", 2, 6, local.failures)
    for name in ("reports", "paragraphs"):
        import pyarrow.parquet as pq

        assert pq.read_table(ray_out / f"{name}.parquet").equals(pq.read_table(local_out / f"{name}.parquet"))
        # and Parquet holds what JSON Lines holds
        assert read_rows(local_out / f"{name}.parquet") == read_rows(local_jsonl[0] / f"{name}.jsonl")


@pytest.mark.slow
def test_store_import_stores_each_report_once(local_jsonl, db_url):
    out, summary = local_jsonl
    result = fazhi("store", "import", str(out), "--db", db_url)
    assert result.returncode == 0, result.stderr
    assert "stored 6 reports" in result.stderr and "0 already there" in result.stderr
    store = open_store(db_url)
    try:
        stored, _ = store.list(50)
        assert len(stored) == 6 and sum(r["paragraphs"] for r in stored) == summary.paragraphs
        batch = {r["report"]: r for r in read_rows(out / "reports.jsonl")}
        one = store.get(stored[0]["id"])
        assert one["digest"] == batch[one["id"]]["digest"] and one["source"] == batch[one["id"]]["file"]
        flagged, _ = store.paragraphs(ParagraphQuery(kind=None), 5000)
        assert len(flagged) == summary.paragraphs
    finally:
        store.close()
    again = fazhi("store", "import", str(out), "--db", db_url)
    assert again.returncode == 0 and "stored 0 reports" in again.stderr and "6 already there" in again.stderr


@pytest.mark.parametrize("args, problem", [
    (["/no/such/dir"], "/no/such/dir: no report files here"),
    (["{folder}", "--format", "csv"], "--format: expected one of jsonl, parquet"),
    (["{folder}", "--engine", "spark"], "--engine: expected one of local, ray"),
    (["{folder}", "--engine", "ray", "--workers", "0"], "--workers: must be positive"),
])
def test_tag_many_rejects_bad_input_in_one_line(tmp_path, args, problem):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("一、依法行政\n全面推进依法行政。\n", encoding="utf-8")
    args = [a.format(folder=tmp_path / "in") for a in args]
    result = fazhi("tag-many", *args, "--out", str(tmp_path / "out"), "--model", "rules")
    assert result.returncode == 2 and result.stderr.startswith(f"fazhi: error: {problem}"), result.stderr
    assert result.stderr.count("\n") == 1


def test_tag_many_takes_a_glob_and_store_import_rejects_other_folders(tmp_path):
    for report in REPORTS:
        shutil.copy(report, tmp_path / report.name)
    result = fazhi("tag-many", str(tmp_path / "00[13]_*.txt"), "--out", str(tmp_path / "out"), "--model", "rules")
    assert result.returncode == 0 and "tagged 2 of 2 reports" in result.stderr, result.stderr
    assert len(read_rows(tmp_path / "out" / "reports.parquet")) == 2
    bad = fazhi("store", "import", str(tmp_path), "--db", str(tmp_path / "s.db"))
    assert bad.returncode == 2 and "not a `fazhi tag-many` output folder" in bad.stderr


@pytest.mark.slow
def test_bench_batch_times_each_run_and_compares_their_rows(folder, tiny_model, tmp_path):
    from fazhi.batch import bench_batch

    result = bench_batch(folder, tmp_path, model=str(tiny_model[0]), runs=[("local", 1), ("local", 1)],
                         progress=False)
    assert result["identical_rows"] is True and [r["reports"] for r in result["runs"]] == [6, 6]
    assert result["runs"][0]["speedup"] == 1.0 and result["runs"][1]["reports_per_s"] > 0
    bad = fazhi("bench-batch", "--reports", "0")
    assert bad.returncode == 2 and "--reports: must be positive" in bad.stderr
