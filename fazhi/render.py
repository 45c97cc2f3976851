"""Readable renderings: a digest's and a year-over-year comparison's chart (PNG), markdown and
self-contained HTML; the speed benchmark's chart (PNG)."""

from __future__ import annotations

import base64
import html
import io

from fazhi.plotting import use_cjk_font
from fazhi.models.compare import Comparison
from fazhi.models.digest import Digest


def coverage_chart(digest: Digest, names: dict[str, str]) -> bytes:
    """PNG bytes of a horizontal bar chart: share of body paragraphs per category, missing ones in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    font = use_cjk_font()
    cats = list(digest.coverage)[::-1]
    label = (lambda c: f"{names.get(c, c)} ({c})") if font else str
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(cats) + 1.2))
    colors = ["#2e86c1"] * len(cats)
    bars = ax.barh([label(c) for c in cats], [100 * digest.coverage[c] for c in cats], color=colors)
    missing = set(digest.missing_categories)
    ax.bar_label(bars, labels=["not addressed" if c in missing else f"{100 * digest.coverage[c]:.0f}%" for c in cats],
                 padding=3, fontsize=8)
    for tick, c in zip(ax.get_yticklabels(), cats):
        tick.set_color("#c0392b" if c in missing else "black")
    ax.set_xlabel("share of body paragraphs (%)")
    ax.set_xlim(0, max(100 * max(digest.coverage.values()) * 1.15, 10))
    ax.set_title("coverage of the outline (red: not addressed)")
    return _png(fig)


def _png(fig) -> bytes:
    """PNG bytes of a matplotlib figure, which is then closed (also when saving fails)."""
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        return buf.getvalue()
    finally:
        plt.close(fig)


def bench_chart(result: dict) -> bytes:
    """PNG bytes of ``fazhi bench`` figures: paragraphs/s per path (left) and whole-report time
    against report length with the 1× rate extended linearly (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    paths = {"pipeline\nbatch 1": result["pipeline_batch1_paragraphs_per_s"],
             "pipeline\nbatch 32": result["pipeline_batch32_paragraphs_per_s"],
             "fazhi": result["fazhi_paragraphs_per_s"]}
    if "encoder_paragraphs_per_s" in result:  # a blended model: its encoder alone, as the pipeline runs it
        paths = {**dict(list(paths.items())[:2]), "fazhi\nencoder alone": result["encoder_paragraphs_per_s"],
                 "fazhi\n(blend)": result["fazhi_paragraphs_per_s"]}
    colours = ["#95a5a6", "#95a5a6"] + ["#2e86c1"] * (len(paths) - 2)
    bars = left.bar(list(paths), list(paths.values()), color=colours)
    left.bar_label(bars, fmt="%.1f", padding=2)
    left.set_ylim(0, 1.15 * max(paths.values()))
    left.set_ylabel("paragraphs / s")
    left.set_title(f"{result['speedup']}× the pipeline's best, macro-F1 delta {result['macro_f1_delta']:+}")
    runs = list(result["report_ms"].values())
    n = [r["paragraphs"] for r in runs]
    ms = [r["ms"] / 1000 for r in runs]
    right.plot(n, ms, "o-", color="#2e86c1", label="parse + tag + digest")
    right.plot(n, [ms[0] * k / n[0] for k in n], "--", color="#95a5a6", label="linear from 1×")
    for k, (x, y) in zip(result["report_ms"], zip(n, ms)):
        right.annotate(k, (x, y), textcoords="offset points", xytext=(4, -12), fontsize=8)
    right.set_xlabel("paragraphs in the report")
    right.set_ylabel("seconds")
    right.set_title("whole report")
    right.legend(fontsize=8)
    fig.suptitle(f"fazhi bench: {result['paragraphs']} paragraphs, {result['cpu_cores']} CPU cores", fontsize=10)
    return _png(fig)


def _figure_line(f) -> str:
    value = f"{f.value:g}" if isinstance(f.value, float) else str(f.value)
    return f"{value}{f.unit} — {f.what} ({f.category}, {f.paragraph_id})"


def digest_markdown(digest: Digest, names: dict[str, str], title: str, chart: str | None = None) -> str:
    """Markdown page of a digest; ``chart`` is the path or URL of the coverage PNG to show, if any."""
    name = lambda c: f"{names.get(c, c)} ({c})"  # noqa: E731
    lines = [f"# {title}", "", "## Summary", "", digest.summary, "", "## Coverage", ""]
    if chart:
        lines += [f"![coverage]({chart})", ""]
    lines += ["| category | share |", "|---|---|"]
    lines += [f"| {name(c)} | {100 * s:.1f}% |" for c, s in digest.coverage.items()]
    missing = ", ".join(name(c) for c in digest.missing_categories) or "none"
    lines += ["", f"Not addressed: {missing}", "", "## Admitted shortcomings", ""]
    lines += [f"{i}. {s.text} ({s.category}, {s.paragraph_id})" for i, s in enumerate(digest.shortcomings, 1)] or ["none"]
    lines += ["", "## Claimed figures", ""]
    lines += [f"- {_figure_line(f)}" for f in digest.figures] or ["none"]
    lines += ["", "## Highlights", ""]
    for c, sentences in digest.highlights.items():
        lines += [f"### {name(c)}", ""] + [f"- {s}" for s in sentences] + [""]
    return "\n".join(lines).rstrip() + "\n"


def digest_html(digest: Digest, names: dict[str, str], title: str) -> str:
    """One self-contained HTML page (the chart inlined as a data URI)."""
    e = html.escape
    name = lambda c: e(f"{names.get(c, c)} ({c})")  # noqa: E731
    png = base64.b64encode(coverage_chart(digest, names)).decode("ascii")
    rows = "".join(f"<tr><td>{name(c)}</td><td>{100 * s:.1f}%</td></tr>" for c, s in digest.coverage.items())
    shortcomings = "".join(f"<li>{e(s.text)} <small>({e(s.category)}, {e(s.paragraph_id)})</small></li>"
                           for s in digest.shortcomings) or "<li>none</li>"
    figures = "".join(f"<li>{e(_figure_line(f))}</li>" for f in digest.figures) or "<li>none</li>"
    highlights = "".join(f"<h3>{name(c)}</h3><ul>{''.join(f'<li>{e(s)}</li>' for s in ss)}</ul>"
                         for c, ss in digest.highlights.items())
    missing = ", ".join(name(c) for c in digest.missing_categories) or "none"
    return (f"<!doctype html><html lang=\"zh\"><head><meta charset=\"utf-8\"><title>{e(title)}</title></head><body>"
            f"<h1>{e(title)}</h1><h2>Summary</h2><p>{e(digest.summary)}</p>"
            f"<h2>Coverage</h2><img alt=\"coverage\" src=\"data:image/png;base64,{png}\">"
            f"<table><tr><th>category</th><th>share</th></tr>{rows}</table><p>Not addressed: {missing}</p>"
            f"<h2>Admitted shortcomings</h2><ol>{shortcomings}</ol><h2>Claimed figures</h2><ul>{figures}</ul>"
            f"<h2>Highlights</h2>{highlights}</body></html>\n")


def tagged_markdown(paragraphs: list[dict]) -> str:
    """One line per paragraph (dicts of the ``fazhi tag --format json`` shape), headings as markdown headings."""
    lines = []
    for p in paragraphs:
        flag = " ⚠ shortcoming" if p["shortcoming"] else ""
        indent = "#" * min(p["level"] + 1, 6) + " " if p["kind"] == "heading" else ""
        text = p["text"] if len(p["text"]) <= 60 else p["text"][:60] + "…"
        lines.append(f"{indent}[{p['category']} {p['scores'][p['category']]:.2f}{flag}] {text}")
    return "\n".join(lines) + "\n"


_STATUS = {"recurring": "再次出现", "new": "新出现", "no_longer_mentioned": "不再提及"}


def comparison_chart(comparison: Comparison, names: dict[str, str]) -> bytes:
    """PNG bytes: each category's share of body paragraphs in the two years, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    font = use_cjk_font()
    rows = comparison.coverage[::-1]
    label = (lambda c: f"{names.get(c, c)} ({c})") if font else str
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 0.55 * len(rows) + 1.4))
    for offset, key, color in ((0.2, "old", "#aab7b8"), (-0.2, "new", "#2e86c1")):
        year = comparison.to_dict()[key].get("year") or key
        ax.barh(y + offset, [100 * getattr(r, key) for r in rows], height=0.4, color=color, label=str(year))
    ax.set_yticks(y, [label(r.category) for r in rows])
    ax.set_xlabel("share of body paragraphs (%)")
    ax.legend(loc="lower right")
    ax.set_title("coverage of the outline, year over year")
    return _png(fig)


def comparison_markdown(comparison: Comparison, names: dict[str, str], chart: str | None = None) -> str:
    """Markdown page of a comparison; ``chart`` is the path or URL of its PNG, if any."""
    c = comparison
    name = lambda cat: f"{names.get(cat, cat)} ({cat})"  # noqa: E731
    title = lambda side: side.get("title") or side.get("region") or "report"  # noqa: E731
    lines = [f"# {title(c.old)} → {title(c.new)}", "", c.summary, ""]
    if chart:
        lines += [f"![coverage]({chart})", ""]
    lines += ["## Admitted shortcomings", "", "| status | shortcoming | matched | similarity |", "|---|---|---|---|"]
    lines += [f"| {_STATUS[s.status]} | {s.text} | {s.matched_text or ''} | "
              f"{'' if s.similarity is None else f'{s.similarity:.2f}'} |" for s in c.shortcomings]
    lines += ["", "## Coverage", "", "| category | old | new | change |", "|---|---|---|---|"]
    lines += [f"| {name(r.category)} | {100 * r.old:.1f}% | {100 * r.new:.1f}% | {100 * r.change:+.1f} |"
              for r in c.coverage]
    lines += ["", "## Figures", "", "| what | old | new | change |", "|---|---|---|---|"]
    lines += [f"| {f.what} | {f.old:g}{f.unit} | {f.new:g}{f.unit} | {f.change:+g} |" for f in c.figures]
    return "\n".join(lines) + "\n"


def comparison_html(comparison: Comparison, names: dict[str, str]) -> str:
    """One self-contained HTML page of a comparison (the chart inlined)."""
    e = html.escape
    c = comparison
    png = base64.b64encode(comparison_chart(c, names)).decode("ascii")
    sc = "".join(f"<tr><td>{_STATUS[s.status]}</td><td>{e(s.text)}</td><td>{e(s.matched_text or '')}</td>"
                 f"<td>{'' if s.similarity is None else f'{s.similarity:.2f}'}</td></tr>" for s in c.shortcomings)
    cov = "".join(f"<tr><td>{e(names.get(r.category, r.category))}</td><td>{100 * r.old:.1f}%</td>"
                  f"<td>{100 * r.new:.1f}%</td><td>{100 * r.change:+.1f}</td></tr>" for r in c.coverage)
    fig = "".join(f"<tr><td>{e(f.what)}</td><td>{f.old:g}{e(f.unit)}</td><td>{f.new:g}{e(f.unit)}</td>"
                  f"<td>{f.change:+g}</td></tr>" for f in c.figures)
    title = e(f"{c.old.get('title') or 'old'} → {c.new.get('title') or 'new'}")
    return (f"<!doctype html><html lang=\"zh\"><head><meta charset=\"utf-8\"><title>{title}</title></head><body>"
            f"<h1>{title}</h1><p>{e(c.summary)}</p><img alt=\"coverage\" src=\"data:image/png;base64,{png}\">"
            f"<h2>Admitted shortcomings</h2><table><tr><th>status</th><th>shortcoming</th><th>matched</th>"
            f"<th>similarity</th></tr>{sc}</table>"
            f"<h2>Coverage</h2><table><tr><th>category</th><th>old</th><th>new</th><th>change</th></tr>{cov}</table>"
            f"<h2>Figures</h2><table><tr><th>what</th><th>old</th><th>new</th><th>change</th></tr>{fig}</table>"
            "</body></html>\n")


def _government(row: dict) -> str:
    return row.get("region") or row.get("title") or row["id"][:8]


HEATMAP_ROWS = 40


def coverage_heatmap(rows: list[dict], labels: list[str], names: dict[str, str]) -> bytes:
    """PNG bytes: governments × categories, each cell the share of the government's body paragraphs
    (its latest stored report); an empty cell is an area it does not address. At most
    ``HEATMAP_ROWS`` governments, those with the most paragraphs stored."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    font = use_cjk_font()
    latest: dict[str, dict] = {}
    for r in rows:
        key = _government(r)
        if key not in latest or (r.get("year") or 0) >= (latest[key].get("year") or 0):
            latest[key] = r
    # the governments with the most paragraphs stored, so the figure stays readable (and under Agg's size limit)
    govs = sorted(sorted(latest, key=lambda g: -sum(latest[g]["paragraphs"].values()))[:HEATMAP_ROWS])
    share = np.array([[latest[g]["paragraphs"].get(c, 0) / max(sum(latest[g]["paragraphs"].values()), 1)
                       for c in labels] for g in govs]) if govs else np.zeros((0, len(labels)))
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 2, 0.5 * len(govs) + 2))
    ax.imshow(np.where(share > 0, share, np.nan), cmap="Blues", vmin=0, vmax=max(share.max(initial=0), 0.01),
              aspect="auto")
    ax.set_xticks(range(len(labels)), [names.get(c, c) if font else c for c in labels], rotation=35, ha="right")
    ax.set_yticks(range(len(govs)), govs if font else [str(i + 1) for i in range(len(govs))])
    for i in range(len(govs)):
        for j in range(len(labels)):
            ax.text(j, i, f"{100 * share[i, j]:.0f}%" if share[i, j] else "—", ha="center", va="center", fontsize=8,
                    color="#c0392b" if not share[i, j] else "black")
    ax.set_title("share of body paragraphs per area (—: not addressed)")
    fig.tight_layout()
    return _png(fig)


def year_lines(rows: list[dict], labels: list[str], names: dict[str, str]) -> bytes:
    """PNG bytes: for each government with several years stored, its admitted shortcomings per year."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    font = use_cjk_font()
    by_gov: dict[str, dict[int, int]] = {}
    for r in rows:
        if r.get("year"):
            by_gov.setdefault(_government(r), {})[r["year"]] = sum(r["shortcomings"].values())
    fig, ax = plt.subplots(figsize=(7, 4))
    for gov, years in sorted(by_gov.items()):
        if len(years) > 1:
            xs = sorted(years)
            ax.plot(xs, [years[x] for x in xs], marker="o", label=gov if font else None)
    ax.set_xlabel("year")
    ax.set_ylabel("paragraphs admitting a shortcoming")
    if font:
        ax.legend(fontsize=8)
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _png(fig)
