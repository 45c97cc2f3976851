"""Speed benchmark: the default tagging path against the plain transformers pipeline, in one run.

Both read the same model directory and the same paragraphs (those of the given reports,
repeated to ``n`` paragraphs, sent without outline context as the pipeline has none). The
pipeline runs at batch size 1 and 32 and its better figure is the baseline. Quality is the
category macro-F1 of each path on the gold paragraphs, so the speed-up is checked not to
cost accuracy. Also timed: one whole report (parse + tag + digest) at 1×, 4× and 16× its
paragraphs, which should grow linearly. A distilled model (its fazhi.json names a teacher
that is on disk) also has the pipeline run on its teacher: ``speedup_vs_teacher`` is the
student's pipeline rate over the teacher's (the same runtime on both, so it is the gain of
the dropped layers alone), ``fazhi_vs_teacher_pipeline`` the student's default path over it.
A blended model (:mod:`fazhi.models.blend`) also has its encoder timed and scored alone
(``encoder_*``): ``encoder_macro_f1_delta`` against the pipeline is then the cost of the fast
runtime alone, ``macro_f1_delta`` that of the fast runtime and the blend together.
``fazhi_rescored_share`` is the share of the default path's inputs that int8 left near a
decision boundary and float32 ran again (None where nothing is re-run: torch, or one ONNX
graph alone): on text the model is unsure of, it is what the speed pays for float32's labels.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

from fazhi.corpora import parse_text, read_text
from fazhi.errors import FazhiError
from fazhi.analysis import Analyzer
from fazhi.models.onnx import int8_dot_flags


def _reset_peak() -> bool:
    """Reset this process's peak RSS (Linux ``clear_refs``), so each path's peak is its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _rate(fn, texts: Sequence[str]) -> float:
    start = time.perf_counter()
    fn(texts)
    return round(len(texts) / (time.perf_counter() - start), 2)


def run_bench(model_dir: str | Path, reports: Sequence[Path], gold_dir: str | Path, n: int = 2000,
              progress: bool = True) -> dict:
    """All figures of ``fazhi bench`` as one dict (paragraphs/s, speedup, macro-F1 delta, peaks, report ms,
    and the CPU's 8-bit dot-product instructions, :func:`int8_dot_flags`)."""
    from sklearn.metrics import f1_score
    from tqdm.auto import tqdm

    from fazhi.corpora.gold import load_gold
    from fazhi.models.blend import BlendClassifier
    from fazhi.models.registry import load_classifier

    model_dir = Path(model_dir)
    docs = [parse_text(read_text(r)) for r in reports]
    base = [p.text for d in docs for p in d.body]
    if not base:
        raise FazhiError("bench", "no paragraphs in the given reports")
    texts = (base * (n // len(base) + 1))[:n]
    gold = [r for rows in load_gold(gold_dir).values() for r in rows if r["kind"] == "body"]
    gold_texts, gold_labels = [r["text"] for r in gold], [r["category"] for r in gold]
    labels = sorted(set(gold_labels))
    macro = lambda pred: float(f1_score(gold_labels, pred, labels=labels, average="macro", zero_division=0))  # noqa: E731
    steps = tqdm(total=5, desc="bench", disable=not progress)
    result: dict = {"model": str(model_dir), "paragraphs": n, "cpu_cores": os.cpu_count(),
                    "cpu_int8_dot_flags": int8_dot_flags(), "torch_threads": None}

    _reset_peak()
    fast = load_classifier(model_dir)
    analyzer = Analyzer(fast)
    result["fazhi_backend"] = getattr(fast, "backend", fast.name)
    fast.predict(base[:8])  # warm-up
    runtime = getattr(getattr(fast, "encoder", fast), "runtime", None)
    # the ONNX runtime's count of inputs re-run in float32, where it has a float32 session beside int8
    rows = getattr(runtime, "rows", None) if getattr(runtime, "exact", None) is not None else None
    before = dict(rows) if rows else None
    result["fazhi_paragraphs_per_s"] = _rate(fast.predict, texts)
    result["fazhi_rescored_share"] = round((rows["rescored"] - before["rescored"]) /
                                           max(1, rows["scored"] - before["scored"]), 4) if rows else None
    steps.update()
    result["fazhi_macro_f1"] = round(macro([p.category for p in fast.predict(gold_texts)]), 4)
    result["fazhi_peak_rss_mb"] = _peak_mb()
    blended = isinstance(fast, BlendClassifier)
    if blended:  # its encoder alone too, as the pipeline runs it
        result["encoder_paragraphs_per_s"] = _rate(fast.encoder.predict, texts)
        result["encoder_macro_f1"] = round(macro([p.category for p in fast.encoder.predict(gold_texts)]), 4)
    report_ms = {}
    for k in (1, 4, 16):
        text = "\n".join([read_text(reports[0])] * k)
        start = time.perf_counter()
        doc = parse_text(text)
        analyzer.analyze(doc).digest
        report_ms[f"{k}x"] = {"paragraphs": len(doc.paragraphs), "ms": round(1000 * (time.perf_counter() - start), 1)}
    result["report_ms"] = report_ms
    result["report_growth_16x_per_paragraph"] = round(
        (report_ms["16x"]["ms"] / report_ms["16x"]["paragraphs"]) / (report_ms["1x"]["ms"] / report_ms["1x"]["paragraphs"]), 2)
    steps.update()
    del fast, analyzer  # the pipeline's peak memory should be its own

    import torch

    result["torch_threads"] = torch.get_num_threads()
    pipe = _pipeline_figures(model_dir, base, texts, gold_texts, macro, steps)
    result.update({f"pipeline_{k}": v for k, v in pipe.items()})
    steps.close()

    result["speedup"] = round(result["fazhi_paragraphs_per_s"] / result["pipeline_paragraphs_per_s"], 2)
    result["macro_f1_delta"] = round(result["fazhi_macro_f1"] - result["pipeline_macro_f1"], 4)
    if blended:
        result["encoder_speedup"] = round(result["encoder_paragraphs_per_s"] / result["pipeline_paragraphs_per_s"], 2)
        result["encoder_macro_f1_delta"] = round(result["encoder_macro_f1"] - result["pipeline_macro_f1"], 4)
    teacher = distilled_from(model_dir)
    if teacher is not None:
        # the same runtime on both sides, so the ratio is what the dropped layers buy
        figures = _pipeline_figures(teacher, base, texts, gold_texts, macro, None)
        result["teacher"] = str(teacher)
        result.update({f"teacher_pipeline_{k}": v for k, v in figures.items()})
        result["speedup_vs_teacher"] = round(result["pipeline_paragraphs_per_s"] /
                                             result["teacher_pipeline_paragraphs_per_s"], 2)
        result["fazhi_vs_teacher_pipeline"] = round(result["fazhi_paragraphs_per_s"] /
                                                    result["teacher_pipeline_paragraphs_per_s"], 2)
    return result


def distilled_from(model_dir: str | Path) -> Path | None:
    """The teacher a distilled model's fazhi.json names, where that directory exists (else None)."""
    from fazhi.models.meta import ModelMeta

    teacher = ModelMeta.read(model_dir).teacher
    return Path(teacher) if teacher and (Path(teacher) / "config.json").is_file() else None


def _pipeline_figures(model_dir: str | Path, base: list[str], texts: list[str], gold_texts: list[str], macro,
                      steps) -> dict:
    """``transformers.pipeline`` on ``model_dir``: paragraphs/s of ``texts`` at batch size 1 and 32
    (and the better of them), category macro-F1 on ``gold_texts`` (``macro`` scores the labels),
    peak RSS in MB, and the tokens per input it was given (the model's own ``max_length``). ``steps`` (a progress
    bar or None) advances once per figure."""
    from transformers import pipeline

    from fazhi.models.meta import ModelMeta

    _reset_peak()
    pipe = pipeline("text-classification", model=str(model_dir), device=-1)
    # the model's own input length, so both sides cut a long paragraph at the same token
    kw = {"truncation": True, "max_length": ModelMeta.read(model_dir).max_length}
    tick = steps.update if steps is not None else (lambda: None)
    pipe(base[:8], batch_size=8, **kw)  # warm-up
    out = {"batch1_paragraphs_per_s": _rate(lambda t: pipe(t, batch_size=1, **kw), texts)}
    tick()
    out["batch32_paragraphs_per_s"] = _rate(lambda t: pipe(t, batch_size=32, **kw), texts)
    tick()
    out["macro_f1"] = round(macro([o["label"] for o in pipe(gold_texts, batch_size=1, **kw)]), 4)
    out["peak_rss_mb"] = _peak_mb()
    tick()
    out["paragraphs_per_s"] = max(out["batch1_paragraphs_per_s"], out["batch32_paragraphs_per_s"])
    out["max_length"] = kw["max_length"]
    return out
