"""Tag many reports at once: read, parse, tag and digest every file of a folder or glob, and write
one row per paragraph and one per report (``fazhi tag-many``).

Two engines give the same rows: ``local`` (this process, the default) and ``ray`` (Ray Data,
on a local Ray instance or an existing cluster: the files' bytes travel in the dataset, and
each worker is a stateful actor, :class:`Tagger`, that loads the model once). A file that
cannot be read or tagged becomes a failure with its reason; it never stops the batch.

Output folder: ``reports.{jsonl,parquet}``, ``paragraphs.{jsonl,parquet}`` (rows in input
order, then reading order) and ``summary.json`` (counts, failures, engine, seconds).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any, Iterable, Iterator, Sequence

from fazhi.errors import FazhiError

FORMATS = ("jsonl", "parquet")
ENGINES = ("local", "ray")
JSON_COLUMNS = ("meta", "digest")  # nested objects, kept as JSON text in Parquet


def find_inputs(spec: str) -> list[Path]:
    """The report files ``spec`` names: a folder (every supported file below it) or a glob
    pattern, sorted; a :class:`FazhiError` when it names none."""
    from fazhi.corpora.reader import SUPPORTED

    path = Path(spec)
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED]
    elif path.is_file():
        found = [path]
    else:
        found = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
    if not found:
        raise FazhiError(spec, "no report files here (a folder or a glob pattern of .txt/.html/.docx/.pdf/… files)")
    return sorted(found)


def report_id(name: str, data: bytes) -> str:
    """A report's id in the batch and in the store: the same file gives the same id, so importing a
    batch twice stores it once."""
    return hashlib.sha256(name.encode() + b"\0" + data).hexdigest()[:32]


class Tagger:
    """One worker: the model loaded once, then :meth:`tag` per file. Also the Ray Data ``map_batches``
    callable (:meth:`__call__`): a batch of ``index``/``name``/``data`` columns in, the same
    number of ``index``/``result`` rows out (``result`` is the JSON of :meth:`tag`)."""

    def __init__(self, model: str | None, ocr: str | None = None, threads: int | None = None):
        if threads:  # a Ray worker owns its share of the cores, not all of them
            os.environ["FAZHI_THREADS"] = str(threads)
            import torch

            torch.set_num_threads(threads)
        from fazhi.analysis import Analyzer
        from fazhi.settings import settings

        self.analyzer = Analyzer(model, reading=settings(ocr=ocr))

    def tag(self, name: str, data: bytes) -> dict[str, Any]:
        """``{"report": row, "paragraphs": rows}`` for one file, or ``{"error": reason}``."""
        from fazhi.corpora import parse_text
        from fazhi.corpora.reader import read_bytes

        try:
            text = read_bytes(data, PurePath(name).suffix.lower(), name, self.analyzer.reading)
            analysis = self.analyzer.analyze(parse_text(text), name=name)
            digest = analysis.digest.to_dict()
        except FazhiError as err:
            return {"error": str(err)}
        except Exception as err:  # a bug on one file must not end the batch: it is reported with its file
            return {"error": f"{name}: {type(err).__name__}: {err}"}
        rid, meta = report_id(name, data), analysis.document.meta
        paragraphs = [{"report": rid, "file": name, "position": i, **p} for i, p in enumerate(analysis.paragraphs())]
        body = [p for p in paragraphs if p["kind"] == "body"]
        report = {"report": rid, "file": name, "title": meta.get("title"), "region": meta.get("region"),
                  "year": meta.get("year"), "model": self.analyzer.classifier.name, "paragraphs": len(paragraphs),
                  "body_paragraphs": len(body), "shortcomings": sum(p["shortcoming"] for p in body),
                  "meta": meta, "digest": digest}
        return {"report": report, "paragraphs": paragraphs}

    def __call__(self, batch: dict[str, Sequence]) -> dict[str, list]:
        results = [json.dumps(self.tag(str(n), bytes(d)), ensure_ascii=False)
                   for n, d in zip(batch["name"], batch["data"])]
        return {"index": [int(i) for i in batch["index"]], "result": results}


@dataclass
class BatchSummary:
    """What a batch did: counts, each failure's file and reason, and how fast (reports/s)."""

    engine: str
    workers: int
    files: int
    reports: int = 0
    paragraphs: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def reports_per_s(self) -> float:
        return self.reports / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "reports_per_s": round(self.reports_per_s, 3)}

    def line(self) -> str:
        failed = "".join(f"\n  failed {f['file']}: {f['reason']}" for f in self.failures)
        return (f"tagged {self.reports} of {self.files} reports ({self.paragraphs} paragraphs) in {self.seconds:.1f} s "
                f"on {self.engine} with {self.workers} worker(s): {self.reports_per_s:.2f} reports/s; "
                f"{len(self.failures)} failed{failed}")


def _absolute(model: str | None) -> str | None:
    """``model`` with a model directory made absolute, so that workers started elsewhere (another
    working directory, another node) load the same one."""
    from fazhi.settings import settings

    path = settings(model=model).model_path()
    return str(path.resolve()) if path is not None and path.exists() else model


def _inputs(files: Sequence[Path], root: Path | None) -> Iterator[tuple[int, str, bytes]]:
    for i, path in enumerate(files):
        name = str(path.relative_to(root)) if root and path.is_relative_to(root) else path.name
        yield i, name, path.read_bytes()


def _run_local(items: list[tuple[int, str, bytes]], model: str | None, ocr: str | None,
               progress: bool) -> Iterator[tuple[int, dict]]:
    from tqdm.auto import tqdm

    tagger = Tagger(model, ocr)
    for i, name, data in tqdm(items, desc="reports", unit="report", disable=not progress):
        yield i, tagger.tag(name, data)


def _run_ray(items: list[tuple[int, str, bytes]], model: str | None, ocr: str | None, workers: int,
             address: str | None, progress: bool) -> Iterator[tuple[int, dict]]:
    try:
        import ray
        from ray.data import ActorPoolStrategy, DataContext
    except ImportError:
        raise FazhiError("--engine ray", "Ray is not installed: pip install 'fazhi[ray]'") from None
    from tqdm.auto import tqdm

    started = not ray.is_initialized()
    if started:
        try:
            # a local instance sized for the workers, or the cluster at ADDRESS ("auto": the one this
            # machine belongs to)
            ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise FazhiError(f"--ray-address {address}", f"cannot reach the Ray cluster: {err}") from None
    try:
        DataContext.get_current().enable_progress_bars = False  # one bar, ours, counts reports
        dataset = ray.data.from_items([{"index": i, "name": n, "data": d} for i, n, d in items])
        results = dataset.map_batches(Tagger, fn_constructor_kwargs={"model": model, "ocr": ocr, "threads": 1},
                                      batch_size=1, compute=ActorPoolStrategy(size=workers), num_cpus=1)
        for row in tqdm(results.iter_rows(), total=len(items), desc="reports", unit="report", disable=not progress):
            yield row["index"], json.loads(row["result"])
    finally:
        if started:
            ray.shutdown()


def tag_many(spec: str, out: str | Path, model: str | None = None, fmt: str = "jsonl", engine: str = "local",
             workers: int | None = None, ray_address: str | None = None, ocr: str | None = None,
             progress: bool = True) -> BatchSummary:
    """Tag every report ``spec`` names (folder or glob) and write the rows under ``out``; the
    summary is also written there as ``summary.json``. ``workers``: Ray actors, one core each
    (default: every core of this machine); the local engine is one process."""
    if fmt not in FORMATS:
        raise FazhiError("--format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if engine not in ENGINES:
        raise FazhiError("--engine", f"expected one of {', '.join(ENGINES)}, got {engine!r}")
    if workers is not None and workers < 1:
        raise FazhiError("--workers", f"must be positive, got {workers}")
    files = find_inputs(spec)
    root = Path(spec) if Path(spec).is_dir() else None
    model = _absolute(model)
    workers = 1 if engine == "local" else (workers or os.cpu_count() or 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items = list(_inputs(files, root))
    summary = BatchSummary(engine=engine, workers=workers, files=len(files))
    start = time.perf_counter()
    run = _run_local(items, model, ocr, progress) if engine == "local" else \
        _run_ray(items, model, ocr, workers, ray_address, progress)
    results = dict(run)
    summary.seconds = round(time.perf_counter() - start, 3)
    reports, paragraphs = [], []
    for i, name, _ in items:  # input order, whatever order the workers finished in
        result = results[i]
        if "error" in result:
            summary.failures.append({"file": name, "reason": result["error"]})
            continue
        reports.append(result["report"])
        paragraphs += result["paragraphs"]
    summary.reports, summary.paragraphs = len(reports), len(paragraphs)
    write_rows(reports, out / f"reports.{fmt}")
    write_rows(paragraphs, out / f"paragraphs.{fmt}")
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
    return summary


def write_rows(rows: list[dict], path: Path) -> None:
    """``rows`` as JSON Lines or Parquet (by the suffix); in Parquet the nested ``meta`` and
    ``digest`` are JSON text."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = [{k: json.dumps(v, ensure_ascii=False) if k in JSON_COLUMNS else v for k, v in r.items()} for r in rows]
    pq.write_table(pa.Table.from_pylist(flat), path)


def read_rows(path: Path) -> list[dict]:
    """The rows :func:`write_rows` wrote."""
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    return [{k: json.loads(v) if k in JSON_COLUMNS and isinstance(v, str) else v for k, v in r.items()}
            for r in rows]


def read_batch(out: str | Path) -> Iterable[tuple[dict, list[dict]]]:
    """Each report row of a ``tag-many`` folder with its paragraph rows, in order."""
    out = Path(out)
    for fmt in FORMATS:
        if (out / f"reports.{fmt}").is_file() and (out / f"paragraphs.{fmt}").is_file():
            break
    else:
        raise FazhiError(str(out), "not a `fazhi tag-many` output folder (no reports and paragraphs files)")
    by_report: dict[str, list[dict]] = {}
    for p in read_rows(out / f"paragraphs.{fmt}"):
        by_report.setdefault(p["report"], []).append(p)
    for report in read_rows(out / f"reports.{fmt}"):
        yield report, sorted(by_report.get(report["report"], []), key=lambda p: p["position"])


BENCH_RUNS = (("local", 1), ("ray", 1), ("ray", 2))  # engine, workers


def bench_batch(folder: str | Path, work: str | Path, model: str | None = None,
                runs: Sequence[tuple[str, int]] = BENCH_RUNS, progress: bool = True) -> dict:
    """Time :func:`tag_many` over ``folder`` once per (engine, workers) of ``runs``, in one run on
    this machine, start-up included (Ray's, and each worker's model load). Returns per run its
    reports/s and its speed relative to the first run, and whether every run wrote the same rows."""
    work = Path(work)
    results, rows = [], []
    for engine, workers in runs:
        out = work / f"{engine}-{workers}"
        summary = tag_many(str(folder), out, model=model, fmt="jsonl", engine=engine, workers=workers,
                           progress=progress)
        rows.append([(out / f"{name}.jsonl").read_bytes() for name in ("reports", "paragraphs")])
        results.append({"engine": engine, "workers": workers, "reports": summary.reports,
                        "paragraphs": summary.paragraphs, "seconds": summary.seconds,
                        "reports_per_s": round(summary.reports_per_s, 3)})
    for r in results:
        r["speedup"] = round(r["reports_per_s"] / results[0]["reports_per_s"], 2) if results[0]["reports_per_s"] else None
    return {"runs": results, "identical_rows": all(r == rows[0] for r in rows), "cpus": os.cpu_count()}
