"""The wheel: one top-level name, the data files inside, and a working CLI when installed (not editable)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLE

pytestmark = pytest.mark.slow
BASE_MODEL = ROOT / "build" / "e5-base"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True)
    (found,) = out.glob("fazhi-*.whl")
    return found


def test_the_wheel_holds_one_package_with_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"fazhi", wheel.name.split("-py")[0] + ".dist-info"}
    for needed in ("fazhi/data/taxonomy.yaml", "fazhi/data/bank.yaml", "fazhi/data/sample_report.txt",
                   "fazhi/models/release/adapter_model.safetensors", "fazhi/models/release/adapter_config.json",
                   "fazhi/models/release/fazhi.json", "fazhi/models/release/shortcoming_head.safetensors",
                   "fazhi/corpora/reader.py", "fazhi/models/bert.py", "fazhi/training/train.py",
                   "fazhi/serving/app.py", "fazhi/cli.py", "fazhi/analysis.py"):
        assert needed in names, needed
    assert not any(n.startswith("fazhi/corpora/synthetic/") for n in names)  # training reports stay in the repo


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel installed; its dependencies are this environment's (a .pth
    file), which never sees the editable install's finder."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True)
    return venv


def run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "FAZHI_BACKEND": "torch"})


def test_installed_wheel_works_without_the_checkout(installed, tmp_path):
    where = run(installed, "python", "-c", "import fazhi.models, fazhi.data; print(fazhi.models.__file__)", cwd=tmp_path)
    assert where.returncode == 0 and str(installed) in where.stdout, where.stderr
    gone = run(installed, "python", "-c", "import models", cwd=tmp_path)
    assert gone.returncode != 0 and "No module named 'models'" in gone.stderr

    parsed = run(installed, "fazhi", "parse", str(SAMPLE), cwd=tmp_path)
    assert parsed.returncode == 0 and '"paragraphs"' in parsed.stdout, parsed.stderr
    tagged = run(installed, "fazhi", "tag", str(SAMPLE), "--model", "rules", cwd=tmp_path)
    assert tagged.returncode == 0 and "依法决策" in tagged.stdout + tagged.stderr or tagged.returncode == 0, tagged.stderr
    digest = run(installed, "fazhi", "summarize", str(SAMPLE), "--model", "rules", "--format", "json", cwd=tmp_path)
    assert digest.returncode == 0 and '"coverage"' in digest.stdout, digest.stderr
    synth = run(installed, "fazhi", "corpus", "synth", "--out", "synth", "--count", "2", cwd=tmp_path)
    assert synth.returncode == 0 and len(list((tmp_path / "synth").glob("*.txt"))) == 2, synth.stderr


@pytest.mark.skipif(not (BASE_MODEL / "config.json").is_file(), reason="make setup imports the base encoder")
def test_installed_wheel_merges_the_release_adapter_it_ships(installed, tmp_path):
    merged = run(installed, "fazhi", "models", "merge", "--base-model", str(BASE_MODEL), "--out", "release", cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    # the shipped adapter blends with TF-IDF; merged without that model it is the encoder alone, and says so
    assert "the merged model is the encoder alone" in merged.stderr
    tagged = run(installed, "fazhi", "tag", str(SAMPLE), "--format", "json", cwd=tmp_path)  # default: ./build/release-model
    assert tagged.returncode == 2 and "build/release-model" in tagged.stderr
    tagged = run(installed, "fazhi", "tag", str(SAMPLE), "--model", "release", "--format", "json", cwd=tmp_path)
    assert tagged.returncode == 0 and '"category"' in tagged.stdout, tagged.stderr
    assert not (tmp_path / "release" / "tfidf").exists()

    tfidf = ROOT / "build" / "tfidf"  # the TF-IDF model `make setup` fits, which the shipped blend was fitted with
    merged = run(installed, "fazhi", "models", "merge", "--base-model", str(BASE_MODEL), "--out", "blended",
                 "--tfidf", str(tfidf), cwd=tmp_path)
    assert merged.returncode == 0 and "encoder alone" not in merged.stderr, merged.stderr
    assert (tmp_path / "blended" / "tfidf" / "tfidf.joblib").is_file()
    shipped = json.loads((ROOT / "models" / "release" / "fazhi.json").read_text(encoding="utf-8"))["blend"]
    assert json.loads((tmp_path / "blended" / "fazhi.json").read_text(encoding="utf-8"))["blend"] == shipped
    tagged = run(installed, "fazhi", "tag", str(SAMPLE), "--model", "blended", "--format", "json", cwd=tmp_path)
    assert tagged.returncode == 0 and '"category"' in tagged.stdout, tagged.stderr
    bad = run(installed, "fazhi", "models", "merge", "--base-model", str(BASE_MODEL), "--out", "bad",
              "--tfidf", str(tmp_path), cwd=tmp_path)
    assert bad.returncode == 2 and "no tfidf.joblib" in bad.stderr and not (tmp_path / "bad").exists()


def test_readme_lists_every_setting():
    from fazhi.settings import table

    assert table() in (ROOT / "README.md").read_text(encoding="utf-8")
