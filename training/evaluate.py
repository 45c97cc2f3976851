"""Score a classifier on hand-labelled gold files (format of ``shared/gold/dev``).

Two blocks: ``paragraph`` (each gold body line classified from its text alone, as
an API caller sends it) and ``document`` (each gold file joined back into its
report, parsed, classified with its outline, and aligned back to the gold lines).
Gold body lines the parser does not keep as paragraphs count as misses.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from corpora import parse_text
from fazhi.errors import FazhiError
from models.base import Classifier, document_inputs
from models.digest import build_digest


def load_gold(gold_dir: str | Path) -> dict[str, list[dict]]:
    """Gold rows per document, in line order."""
    gold_dir = Path(gold_dir)
    files = sorted(gold_dir.glob("*.jsonl")) if gold_dir.is_dir() else []
    if not files:
        raise FazhiError(str(gold_dir), "no gold *.jsonl files found")
    docs = defaultdict(list)
    for f in files:
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                docs[f.stem].append({k: row[k] for k in ("i", "text", "kind", "category", "shortcoming")})
            except (json.JSONDecodeError, KeyError) as err:
                raise FazhiError(f"{f}:{n + 1}", f"not a gold line ({err})") from None
    for rows in docs.values():
        rows.sort(key=lambda r: r["i"])
    return dict(docs)


def scores(gold_cat, pred_cat, gold_sc, pred_sc) -> dict:
    """Category macro-F1 (over the categories present in gold), accuracy, shortcoming F1, per-category table."""
    labels = sorted(set(gold_cat))
    p, r, f, support = precision_recall_fscore_support(gold_cat, pred_cat, labels=labels, zero_division=0)
    all_labels = sorted(set(gold_cat) | set(pred_cat))
    return {
        "n": len(gold_cat),
        "category_macro_f1": round(float(f1_score(gold_cat, pred_cat, labels=labels, average="macro", zero_division=0)), 4),
        "category_accuracy": round(float(accuracy_score(gold_cat, pred_cat)), 4),
        "shortcoming_f1": round(float(f1_score(gold_sc, pred_sc, pos_label=True, zero_division=0)), 4),
        "shortcoming_positives": int(sum(gold_sc)),
        "per_category": {lab: {"precision": round(float(a), 4), "recall": round(float(b), 4), "f1": round(float(c), 4),
                               "support": int(s)} for lab, a, b, c, s in zip(labels, p, r, f, support)},
        "confusion": {"labels": all_labels,
                      "matrix": confusion_matrix(gold_cat, pred_cat, labels=all_labels).tolist()},
    }


def evaluate(model: Classifier, gold_dir: str | Path) -> dict:
    """Both blocks for ``model`` on every gold file in ``gold_dir``."""
    gold = load_gold(gold_dir)
    body = [r for rows in gold.values() for r in rows if r["kind"] == "body"]
    alone = model.predict([r["text"] for r in body])
    paragraph = scores([r["category"] for r in body], [p.category for p in alone],
                       [r["shortcoming"] for r in body], [p.shortcoming for p in alone])

    g_cat, p_cat, g_sc, p_sc = [], [], [], []
    sc_lines = sc_listed = 0
    for name, rows in gold.items():
        doc = parse_text("\n".join(r["text"] for r in rows))
        texts, paths = document_inputs(doc)
        preds = model.predict(texts, paths)
        listed = {s.paragraph_id for s in build_digest(doc, preds, model, source=name).shortcomings} if doc.body else set()
        # each gold line is one line of the joined text: map paragraph start offsets to line numbers
        line_of = {doc.text.count("\n", 0, p.start): (p, pred) for p, pred in zip(doc.paragraphs, preds)}
        for n, r in enumerate(rows):
            if r["kind"] != "body":
                continue
            para, pred = line_of.get(n, (None, None))
            g_cat.append(r["category"])
            g_sc.append(r["shortcoming"])
            p_cat.append(pred.category if pred else "(not a paragraph)")
            p_sc.append(pred.shortcoming if pred else False)
            if r["shortcoming"]:
                sc_lines += 1
                sc_listed += bool(para and para.id in listed)
    document = scores(g_cat, p_cat, g_sc, p_sc)
    # the digest's admitted-shortcoming list: which gold shortcoming lines it quotes from
    digest = {"shortcoming_lines": sc_lines, "shortcoming_lines_listed": sc_listed,
              "shortcoming_line_recall": round(sc_listed / sc_lines, 4) if sc_lines else None}
    return {"model": model.name, "gold": str(gold_dir), "files": len(gold), "paragraph": paragraph,
            "document": document, "digest": digest}


def write_report(result: dict, out_dir: str | Path) -> list[Path]:
    """Per-category tables (markdown) and confusion-matrix PNGs for both blocks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fazhi.plotting import use_cjk_font

    use_cjk_font()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    lines = [f"# Evaluation of `{result['model']}` on `{result['gold']}`", ""]
    for block in ("paragraph", "document"):
        r = result[block]
        lines += [f"## {block} (n={r['n']})", "",
                  f"category macro-F1 **{r['category_macro_f1']}**, accuracy {r['category_accuracy']}, "
                  f"shortcoming F1 **{r['shortcoming_f1']}** ({r['shortcoming_positives']} positives)", "",
                  "| category | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['precision']} | {v['recall']} | {v['f1']} | {v['support']} |" for k, v in r["per_category"].items()]
        lines.append("")
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
    md = out / "report.md"
    md.write_text("\n".join(lines), encoding="utf-8")
    return [md, *written]
