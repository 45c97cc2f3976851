"""Write synthetic training reports in the genre, from the sentence bank in
``fazhi/data/bank.yaml``: varied regions, years, outline styles, sections
of achievements, shortcomings and plans, and the page furniture real sites add.

They are for training only (``label_source`` starts with ``synthetic``) and never
for evaluation.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import yaml

from fazhi.data import BANK
from fazhi.errors import FazhiError

CN = "一二三四五六七八九十"


def _fill(template: str, rng: random.Random, ctx: dict) -> str:
    """Fill the slots; every {n}, {m} and {p} gets a value of its own."""
    fresh = {"n": lambda: str(rng.randint(12, 9800)), "m": lambda: str(rng.randint(2, 40)),
             "p": lambda: f"{rng.uniform(85, 100):.1f}%"}
    template = re.sub(r"\{([nmp])\}", lambda m: fresh[m.group(1)](), template)
    return template.format(**ctx, m1=rng.randint(1, 9), d=rng.randint(0, 9))


def _body(cat: dict, rng: random.Random, ctx: dict, k: int = 3, findings: float = 0.0) -> str:
    """``k`` item sentences; with probability ``findings`` one of the area's findings
    sentences at a random place among them (the rng is left untouched when it is 0, so
    reports without findings stay what they were)."""
    body = [_fill(s, rng, ctx) for s in rng.sample(cat["sentences"], min(k, len(cat["sentences"])))]
    if findings and cat.get("findings") and rng.random() < findings:
        body.insert(rng.randint(0, len(body)), _fill(rng.choice(cat["findings"]), rng, ctx))
    return "".join(body)


def generate_report(seed: int, bank_path: Path = BANK, findings: float = 0.0) -> str:
    """One synthetic report (plain text with furniture), deterministic for ``seed``.

    ``findings``: the share of item bodies (0–1) that also report an inspection's
    findings (查找问题…个), a shortcoming among achievements.
    """
    bank = yaml.safe_load(bank_path.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    region = rng.choice(bank["regions"])
    year = rng.randint(2016, 2024)
    ctx = {"r": region, "u": region[-1], "y": year, "y1": year + 1, "short": region[:1]}
    cats = list(bank["categories"])
    chosen = rng.sample(cats, rng.randint(4, len(cats)))
    style = rng.choice(["nested", "flat", "news"])
    lines: list[str] = []
    lines += [_fill(f, rng, ctx) for f in rng.sample(bank["furniture"], rng.randint(1, 4))]
    lines.append(f"{region}人民政府关于{year}年度法治政府建设情况的报告")
    if rng.random() < 0.5:
        lines.append(f"{region[-1]}委、{region[-1]}人大常委会：")
    lines.append(_fill(rng.choice(bank["openers"]), rng, ctx))

    def section(i: int, key: str) -> list[str]:
        cat = bank["categories"][key]
        items = rng.sample(cat["items"], rng.randint(1, min(3, len(cat["items"]))))
        out = []
        if style == "nested":
            out.append(f"（{CN[i]}）{rng.choice(cat['headings'])}")
            out += [f"{j + 1}.{t}。{_body(cat, rng, ctx, rng.randint(1, 3), findings)}" for j, t in enumerate(items)]
        elif style == "flat":
            out.append(f"{CN[i]}、{rng.choice(cat['headings'])}")
            out += [f"（{CN[j]}）{t}。{_body(cat, rng, ctx, rng.randint(1, 3), findings)}" for j, t in enumerate(items)]
        else:
            for j, t in enumerate(items):
                out += [f"{i * 3 + j + 1}、{t}", _body(cat, rng, ctx, rng.randint(2, 3), findings)]
        if rng.random() < 0.25:  # an admitted problem inside an area section
            fill = {**ctx, "t": cat["area"], "s": rng.choice(bank["shortcomings"][key])}
            out.append(_fill(rng.choice(bank["inline_problems"]), rng, fill))
        return out

    if style != "nested" and rng.random() < 0.4:  # an overall statement after the opener (category other)
        lines.append(_fill(rng.choice(bank["overviews"]), rng, ctx))
    top = 0
    if style == "nested":
        lines.append(f"一、{year}年法治政府建设主要工作和成效")
        if rng.random() < 0.5:  # an overall statement opening the section (category other)
            lines.append(_fill(rng.choice(bank["overviews"]), rng, ctx))
        top = 1
    for i, key in enumerate(chosen):
        lines += section(i if style != "flat" else top + i, key)
    if style == "flat":
        top += len(chosen)
    if rng.random() < 0.3:  # last year's problems and their rectification
        lines.append(f"{CN[top]}、{rng.choice(bank['rectification_headings'])}")
        for k, key in enumerate(rng.sample(chosen, 2)):
            fill = {**ctx, "t": bank["categories"][key]["area"], "s": rng.choice(bank["shortcomings"][key])}
            lines.append(f"（{CN[k]}）" + _fill(rng.choice(bank["rectification_items"]), rng, fill))
        top += 1
    problems = rng.sample(chosen, min(len(chosen), rng.randint(2, 3)))
    lines += [f"{CN[top]}、{rng.choice(bank['problem_headings'])}", _fill(rng.choice(bank["problem_openers"]), rng, ctx)]
    if rng.random() < 0.5:  # all problems in one paragraph: 一是…；二是…
        lines[-1] += "；".join(f"{CN[k]}是{rng.choice(bank['shortcomings'][key])}" for k, key in enumerate(problems)) + "。"
    else:  # one paragraph per area, titled by the area
        lines += [f"（{CN[k]}）{bank['categories'][key]['area']}方面。{rng.choice(bank['shortcomings'][key])}。"
                  for k, key in enumerate(problems)]
    lines += [f"{CN[top + 1]}、{year + 1}年工作打算", _fill(rng.choice(bank["plan_opener"]), rng, ctx)]
    for k, key in enumerate(rng.sample(chosen, min(4, len(chosen)))):
        title, sentence = rng.choice(bank["plans"][key])
        lines.append(f"（{CN[k]}）{title}。{sentence}")
    if rng.random() < 0.5:
        lines.append(_fill(rng.choice(bank["closings"]), rng, ctx))
    lines += [f"{region}人民政府", f"{year + 1}年{rng.randint(1, 3)}月{rng.randint(1, 28)}日"]
    return "\n\n".join(lines) + "\n"


def write_reports(out_dir: Path, n: int, seed: int = 0, bank_path: Path = BANK, findings: float = 0.0,
                  prefix: str = "synthetic") -> list[Path]:
    """Write ``n`` synthetic reports as ``{prefix}_NNN.txt`` into ``out_dir`` (the file name
    is the document id, so sets written with different prefixes can be built into one corpus)."""
    if not 0.0 <= findings <= 1.0:
        raise FazhiError(str(findings), "findings is a share of item bodies, between 0 and 1")
    if not bank_path.is_file():
        raise FazhiError(str(bank_path), "no such sentence bank")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = out_dir / f"{prefix}_{i:03d}.txt"
        path.write_text(generate_report(seed * 100000 + i, bank_path, findings), encoding="utf-8")
        paths.append(path)
    return paths
