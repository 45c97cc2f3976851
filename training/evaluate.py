"""Score a classifier on hand-labelled gold files (format of ``shared/gold/dev``).

Two blocks: ``paragraph`` (each gold body line classified from its text alone, as
an API caller sends it) and ``document`` (each gold file joined back into its
report, parsed, classified with its outline, and aligned back to the gold lines).
Gold body lines the parser does not keep as paragraphs count as misses.

A third block, ``parse``, compares the parser's line kinds (heading, body, meta) with
the gold kinds, whatever the model: the document block can only score what the parser keeps.

Each block also gives the expected calibration error of both heads, and, with
``bootstrap``, 95% intervals from resampling whole documents: a set of a few dozen
lines moves by several points when one line changes, and the intervals say so.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from fazhi.analysis import Analyzer
from fazhi.corpora.gold import align, load_gold
from fazhi.errors import FazhiError
from fazhi.models.base import Classifier

BLOCKS = ("paragraph", "document")
ECE_BINS = 15
NOT_A_PARAGRAPH = "(not a paragraph)"
KINDS = ("heading", "body", "meta")
INTERVAL_KEYS = ("category_macro_f1", "category_accuracy", "shortcoming_f1", "category_ece", "shortcoming_ece")


def _bin_of(confidence: np.ndarray, bins: int) -> np.ndarray:
    """The equal-width bin of [0, 1] of each confidence (n,), 1.0 in the last."""
    return np.minimum((confidence * bins).astype(int), bins - 1)


def ece(confidence: np.ndarray, outcome: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: over equal-width confidence bins of [0, 1], the
    size-weighted mean gap between the mean confidence (n,) and the mean outcome (n,) (0/1).

    For the category head the confidence is the predicted category's probability and the
    outcome whether it is right; for the shortcoming head, the shortcoming probability and
    whether the line is a shortcoming.
    """
    confidence, outcome = np.asarray(confidence, float), np.asarray(outcome, float)
    if not len(confidence):
        return 0.0
    which = _bin_of(confidence, bins)
    gap = sum(abs(confidence[which == b].mean() - outcome[which == b].mean()) * (which == b).sum()
              for b in range(bins) if (which == b).any())
    return float(gap / len(confidence))


def ece_if_calibrated(confidence: np.ndarray, bins: int = ECE_BINS, draws: int = 1000, seed: int = 13) -> dict:
    """The ECE that a perfectly calibrated model with these confidences (n,) would show on n
    lines: its mean and 95% range over ``draws`` simulated outcome sets (each line right with
    probability equal to its confidence). On a few hundred lines the binned means are noisy, so
    ECE sits above 0 even for perfect scores; a measured ECE inside this range is no evidence
    of miscalibration. Written by hand: scikit-learn's ``calibration_curve`` bins but gives no
    ECE, let alone its sampling range."""
    confidence = np.asarray(confidence, float)
    if not len(confidence):
        return {"mean": 0.0, "interval": [0.0, 0.0]}
    which = _bin_of(confidence, bins)
    outcomes = np.random.default_rng(seed).random((draws, len(confidence))) < confidence  # (draws, n)
    gap = np.zeros(draws)
    for b in np.unique(which):
        m = which == b
        gap += np.abs(confidence[m].mean() - outcomes[:, m].mean(axis=1)) * m.sum()
    gap /= len(confidence)
    return {"mean": round(float(gap.mean()), 4),
            "interval": [round(float(np.percentile(gap, 2.5)), 4), round(float(np.percentile(gap, 97.5)), 4)]}


def reliability(confidence: np.ndarray, outcome: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per non-empty bin: its range, count, mean confidence and mean outcome (for the diagram)."""
    confidence, outcome = np.asarray(confidence, float), np.asarray(outcome, float)
    which = _bin_of(confidence, bins)
    return [{"low": b / bins, "high": (b + 1) / bins, "n": int((which == b).sum()),
             "confidence": round(float(confidence[which == b].mean()), 4),
             "outcome": round(float(outcome[which == b].mean()), 4)} for b in range(bins) if (which == b).any()]


def _heads(lines: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(confidence, outcome) arrays of both heads over scored lines."""
    return {"category": (np.array([l["score"] for l in lines]),
                         np.array([l["category"] == l["gold_category"] for l in lines])),
            "shortcoming": (np.array([l["shortcoming_score"] for l in lines]),
                            np.array([bool(l["gold_shortcoming"]) for l in lines]))}


def scores(lines: list[dict], tables: bool = True) -> dict:
    """Category macro-F1 (over the categories present in gold), accuracy, shortcoming F1, ECE
    of both heads and (with ``tables``) the per-category table and confusion matrix."""
    gold_cat = [l["gold_category"] for l in lines]
    pred_cat = [l["category"] for l in lines]
    gold_sc = [bool(l["gold_shortcoming"]) for l in lines]
    pred_sc = [bool(l["shortcoming"]) for l in lines]
    labels = sorted(set(gold_cat))
    heads = _heads(lines)
    out = {
        "n": len(lines),
        "category_macro_f1": round(float(f1_score(gold_cat, pred_cat, labels=labels, average="macro",
                                                  zero_division=0)), 4),
        "category_accuracy": round(float(accuracy_score(gold_cat, pred_cat)), 4),
        "shortcoming_f1": round(float(f1_score(gold_sc, pred_sc, pos_label=True, zero_division=0)), 4),
        "shortcoming_positives": int(sum(gold_sc)),
        "category_ece": round(ece(*heads["category"]), 4),
        "shortcoming_ece": round(ece(*heads["shortcoming"]), 4),
    }
    if not tables:
        return out
    p, r, f, support = precision_recall_fscore_support(gold_cat, pred_cat, labels=labels, zero_division=0)
    all_labels = sorted(set(gold_cat) | set(pred_cat))
    out["per_category"] = {lab: {"precision": round(float(a), 4), "recall": round(float(b), 4),
                                 "f1": round(float(c), 4), "support": int(s)}
                           for lab, a, b, c, s in zip(labels, p, r, f, support)}
    out["confusion"] = {"labels": all_labels, "matrix": confusion_matrix(gold_cat, pred_cat, labels=all_labels).tolist()}
    out["reliability"] = {head: reliability(*arrays) for head, arrays in heads.items()}
    out["ece_if_calibrated"] = {head: ece_if_calibrated(arrays[0]) for head, arrays in heads.items()}
    return out


def bootstrap(lines: list[dict], n: int, seed: int = 13, against: list[dict] | None = None) -> dict[str, list[float]]:
    """95% percentile intervals of the block figures over ``n`` resamples of whole documents
    (drawn with replacement), so that lines of one report rise and fall together. With
    ``against`` (the same lines, in the same order, scored by another model), intervals of the
    difference ``lines − against`` over the same draws: a paired comparison, far narrower than
    two separate intervals when both models err on the same hard documents."""
    if against is not None and [(l["file"], l["line"]) for l in lines] != [(l["file"], l["line"]) for l in against]:
        raise ValueError("a paired bootstrap needs the same lines, in the same order, on both sides")
    by_doc: dict[str, list[int]] = {}
    for i, line in enumerate(lines):
        by_doc.setdefault(line["file"], []).append(i)
    docs = list(by_doc)
    rng = random.Random(seed)
    draws = {k: [] for k in INTERVAL_KEYS}
    for _ in range(n):
        drawn = [i for d in rng.choices(docs, k=len(docs)) for i in by_doc[d]]
        figures = scores([lines[i] for i in drawn], tables=False)
        other = scores([against[i] for i in drawn], tables=False) if against is not None else None
        for k in INTERVAL_KEYS:
            draws[k].append(figures[k] - (other[k] if other else 0.0))
    return {k: [round(float(np.percentile(v, 2.5)), 4), round(float(np.percentile(v, 97.5)), 4)]
            for k, v in draws.items()}


def scored_line(name: str, row: dict, pred) -> dict:
    """One scored gold body line; ``pred`` is None where the parser kept no paragraph for it."""
    return {"file": name, "line": row["i"], "text": row["text"], "gold_category": row["category"],
            "gold_shortcoming": bool(row["shortcoming"]),
            "category": pred.category if pred else NOT_A_PARAGRAPH,
            "score": pred.scores.get(pred.category, 0.0) if pred else 0.0,
            "shortcoming": bool(pred.shortcoming) if pred else False,
            "shortcoming_score": pred.shortcoming_score if pred else 0.0}


def score_lines(model: Classifier, gold: dict[str, list[dict]], aligned: dict[str, tuple]
                ) -> tuple[dict[str, list[dict]], dict]:
    """Every gold body line scored in both blocks, and the digest's shortcoming-line recall;
    ``aligned``: each gold file's parsed report and paragraphs (:func:`align`)."""
    body = [(name, r) for name, rows in gold.items() for r in rows if r["kind"] == "body"]
    alone = model.predict([r["text"] for _, r in body])
    paragraph = [scored_line(name, r, p) for (name, r), p in zip(body, alone)]

    document, sc_lines, sc_listed = [], 0, 0
    analyses = Analyzer(model).pipe((doc for doc, _ in aligned.values()), names=list(aligned))
    for (name, (doc, paragraphs)), analysis in zip(aligned.items(), analyses):
        preds = dict(zip((p.id for p in doc.paragraphs), analysis.predictions))
        listed = {s.paragraph_id for s in analysis.digest.shortcomings} if doc.body else set()
        rows = gold[name]
        for r, para in zip(rows, paragraphs):
            if r["kind"] != "body":
                continue
            document.append(scored_line(name, r, preds[para.id] if para else None))
            if r["shortcoming"]:
                sc_lines += 1
                sc_listed += bool(para and para.id in listed)
    # the digest's admitted-shortcoming list: which gold shortcoming lines it quotes from
    digest = {"shortcoming_lines": sc_lines, "shortcoming_lines_listed": sc_listed,
              "shortcoming_line_recall": round(sc_listed / sc_lines, 4) if sc_lines else None}
    return {"paragraph": paragraph, "document": document}, digest


def parse_scores(gold: dict[str, list[dict]], aligned: dict[str, tuple], errors: bool = False) -> dict:
    """The parser's kind of every gold line (``aligned`` as in :func:`score_lines`) against the
    gold kind (a line the parser keeps out of its paragraphs counts as ``meta``): ``accuracy``,
    ``confusion`` (rows gold, columns parsed, in ``KINDS`` order), ``body_kept`` (share of gold body lines parsed as paragraphs, heading or
    body), ``meta_kept_out`` (share of gold meta lines left out of the paragraphs), and with
    ``errors`` every line whose kinds differ."""
    index = {k: i for i, k in enumerate(KINDS)}
    matrix = np.zeros((len(KINDS), len(KINDS)), dtype=int)
    wrong = []
    for name, rows in gold.items():
        for row, para in zip(rows, aligned[name][1]):
            parsed = para.kind if para else "meta"
            matrix[index[row["kind"]], index[parsed]] += 1
            if parsed != row["kind"]:
                wrong.append({"file": name, "line": row["i"], "gold": row["kind"], "parsed": parsed, "text": row["text"]})
    share = lambda num, den: round(float(num / den), 4) if den else None  # noqa: E731
    body, meta = matrix[index["body"]], matrix[index["meta"]]
    out = {"n": int(matrix.sum()), "accuracy": share(np.trace(matrix), matrix.sum()),
           "body_kept": share(body.sum() - body[index["meta"]], body.sum()),
           "meta_kept_out": share(meta[index["meta"]], meta.sum()),
           "confusion": {"labels": list(KINDS), "matrix": matrix.tolist()}}
    if errors:
        out["errors"] = wrong
    return out


def is_error(line: dict) -> bool:
    return line["category"] != line["gold_category"] or line["shortcoming"] != line["gold_shortcoming"]


def evaluate(model: Classifier, gold_dir: str | Path, bootstrap_samples: int = 0, errors: bool = False,
             against: Classifier | None = None) -> dict:
    """Both blocks for ``model`` on every gold file in ``gold_dir``; with ``bootstrap_samples``,
    95% intervals per block (``interval``); with ``errors``, every wrong line (``errors``); with
    ``against``, that model's figures and the differences ``model − against`` per block
    (``against``), with paired intervals when ``bootstrap_samples`` is set."""
    if bootstrap_samples < 0:
        raise FazhiError("--bootstrap", f"expected a number of resamples >= 0, got {bootstrap_samples}")
    gold = load_gold(gold_dir)
    aligned = {name: align(rows) for name, rows in gold.items()}  # one parse per file, for every use below
    lines, digest = score_lines(model, gold, aligned)
    other = score_lines(against, gold, aligned)[0] if against is not None else None
    result = {"model": model.name, "gold": str(gold_dir), "files": len(gold)}
    for block in BLOCKS:
        result[block] = scores(lines[block])
        if bootstrap_samples:
            result[block]["interval"] = bootstrap(lines[block], bootstrap_samples)
            result[block]["bootstrap_samples"] = bootstrap_samples
    if other is not None:
        result["against"] = {"model": against.name}
        for block in BLOCKS:
            theirs = scores(other[block], tables=False)
            result["against"][block] = {
                **{k: theirs[k] for k in INTERVAL_KEYS},
                "difference": {k: round(result[block][k] - theirs[k], 4) for k in INTERVAL_KEYS},
                **({"difference_interval": bootstrap(lines[block], bootstrap_samples, against=other[block])}
                   if bootstrap_samples else {})}
    result["digest"] = digest
    result["parse"] = parse_scores(gold, aligned, errors)
    if errors:
        result["errors"] = [{"block": block, **{k: l[k] for k in ("file", "line")},
                             "gold": {"category": l["gold_category"], "shortcoming": l["gold_shortcoming"]},
                             "predicted": {"category": l["category"], "shortcoming": l["shortcoming"]},
                             "score": l["score"], "shortcoming_score": l["shortcoming_score"], "text": l["text"]}
                            for block in BLOCKS for l in lines[block] if is_error(l)]
    return result


def _figure(r: dict, key: str) -> str:
    """``0.812`` or, with an interval, ``0.812 [0.75, 0.87]``."""
    lo_hi = r.get("interval", {}).get(key)
    return f"{r[key]}" + (f" [{lo_hi[0]}, {lo_hi[1]}]" if lo_hi else "")


def _calibrated_line(block: dict) -> str:
    """What ECE a perfectly calibrated model would show on the block's lines, per head."""
    floor = block["ece_if_calibrated"]
    say = lambda h: f"{floor[h]['mean']} [{floor[h]['interval'][0]}, {floor[h]['interval'][1]}]"  # noqa: E731
    return (f"A perfectly calibrated model with these confidences would show ECE category {say('category')}, "
            f"shortcoming {say('shortcoming')} on these {block['n']} lines (mean and 95% range of 1,000 draws).")


def write_report(result: dict, out_dir: str | Path) -> list[Path]:
    """``report.md`` (figures, per-category tables, wrong lines), confusion-matrix and
    reliability-diagram PNGs for both blocks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fazhi.plotting import use_cjk_font

    use_cjk_font()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    lines = [f"# Evaluation of `{result['model']}` on `{result['gold']}`", ""]
    for block in BLOCKS:
        r = result[block]
        ci = " (95% intervals from a document bootstrap)" if "interval" in r else ""
        lines += [f"## {block} (n={r['n']}){ci}", "",
                  f"category macro-F1 **{_figure(r, 'category_macro_f1')}**, accuracy {_figure(r, 'category_accuracy')}, "
                  f"shortcoming F1 **{_figure(r, 'shortcoming_f1')}** ({r['shortcoming_positives']} positives); "
                  f"ECE category {_figure(r, 'category_ece')}, shortcoming {_figure(r, 'shortcoming_ece')}", "",
                  _calibrated_line(r), "",
                  "| category | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['precision']} | {v['recall']} | {v['f1']} | {v['support']} |"
                  for k, v in r["per_category"].items()]
        lines.append("")
        if "against" in result:
            diff = result["against"][block]
            span = lambda k: (f" [{diff['difference_interval'][k][0]:+.4f}, {diff['difference_interval'][k][1]:+.4f}]"  # noqa: E731
                              if "difference_interval" in diff else "")
            lines += [f"Against `{result['against']['model']}`: category macro-F1 {diff['category_macro_f1']} "
                      f"(difference {diff['difference']['category_macro_f1']:+.4f}{span('category_macro_f1')}), "
                      f"shortcoming F1 {diff['shortcoming_f1']} "
                      f"(difference {diff['difference']['shortcoming_f1']:+.4f}{span('shortcoming_f1')})", ""]
        labels, matrix = r["confusion"]["labels"], r["confusion"]["matrix"]
        fig, ax = plt.subplots(figsize=(7, 6))
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                if v:
                    ax.text(j, i, str(v), ha="center", va="center", color="black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.set_title(f"{result['model']} — {block} block")
        fig.tight_layout()
        png = out / f"confusion_{block}.png"
        fig.savefig(png, dpi=120)
        plt.close(fig)
        written.append(png)
        written.append(_reliability_png(r, f"{result['model']} — {block} block", out / f"reliability_{block}.png"))
    parse = result["parse"]
    lines += [f"## parse (n={parse['n']} lines)", "",
              f"kind accuracy **{parse['accuracy']}**; gold body lines kept as paragraphs {parse['body_kept']}, "
              f"gold meta lines kept out {parse['meta_kept_out']}", "",
              "| gold \\ parsed | " + " | ".join(KINDS) + " |", "|---|" + "---|" * len(KINDS)]
    lines += [f"| {k} | " + " | ".join(map(str, row)) + " |" for k, row in zip(KINDS, parse["confusion"]["matrix"])]
    lines.append("")
    if "errors" in parse:
        lines += [f"### Lines of another kind ({len(parse['errors'])})", "", "| file | line | gold | parsed | text |",
                  "|---|---|---|---|---|"]
        lines += [f"| {e['file']} | {e['line']} | {e['gold']} | {e['parsed']} | {e['text'][:80].replace('|', '｜')} |"
                  for e in parse["errors"]]
        lines.append("")
    if "errors" in result:
        lines += [f"## Wrong lines ({len(result['errors'])})", "",
                  "| block | file | line | gold | predicted | score | shortcoming score | text |",
                  "|---|---|---|---|---|---|---|---|"]
        mark = lambda d: d["category"] + (" + shortcoming" if d["shortcoming"] else "")  # noqa: E731
        lines += [f"| {e['block']} | {e['file']} | {e['line']} | {mark(e['gold'])} | {mark(e['predicted'])} | "
                  f"{e['score']} | {e['shortcoming_score']} | {e['text'][:80].replace('|', '｜')} |"
                  for e in result["errors"]]
        lines.append("")
    md = out / "report.md"
    md.write_text("\n".join(lines), encoding="utf-8")
    return [md, *written]


def _reliability_png(block: dict, title: str, path: Path) -> Path:
    """Reliability diagram of both heads: mean outcome against mean confidence per bin,
    marker area by the bin's count; the diagonal is perfect calibration."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4))
    for ax, head, what in zip(axes, ("category", "shortcoming"), ("share correct", "share shortcomings")):
        bins = block["reliability"][head]
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        ax.bar([b["low"] for b in bins], [b["outcome"] for b in bins], width=1 / ECE_BINS, align="edge",
               alpha=0.35, edgecolor="tab:blue")
        ax.scatter([b["confidence"] for b in bins], [b["outcome"] for b in bins],
                   s=[20 + 200 * b["n"] / max(1, block["n"]) for b in bins], color="tab:blue", zorder=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted probability" if head == "shortcoming" else "confidence (top category)")
        ax.set_ylabel(what)
        ax.set_title(f"{head} head, ECE {block[f'{head}_ece']} "
                     f"(if calibrated: {block['ece_if_calibrated'][head]['mean']})")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
