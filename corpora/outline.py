"""Split report text into page furniture/metadata and an outline of paragraphs.

Heading levels are inferred per document from the order in which numbering styles
appear (一、 / (一) / 1. / (1) / ①): a style seen for the first time opens a deeper
level, a style seen before closes every level below it. So a report that starts
at (一) gets (一) as level 1.
"""

from __future__ import annotations

import re
from collections import Counter

from fazhi.corpora.document import Document, Paragraph

_CN = "一二三四五六七八九十百"
MARKERS: list[tuple[str, re.Pattern[str]]] = [
    ("chapter", re.compile(rf"^第[{_CN}]+(?:章|节|部分)\s*")),
    ("cn", re.compile(rf"^[{_CN}]+\s*[、．.]\s*")),
    ("paren_cn", re.compile(rf"^[（(]\s*[{_CN}]+\s*[)）]\s*[、．.]?\s*")),
    ("num", re.compile(r"^\d{1,2}\s*(?:[、．]|\.(?!\d))\s*")),
    ("paren_num", re.compile(r"^[（(]\s*\d{1,2}\s*[)）]\s*")),
    ("circled", re.compile(r"^[①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳]\s*")),
]

_BULLETS = "•·▪◆●■□◇○※ \t"
FURNITURE = [re.compile(p) for p in (
    r"^(?:当前位置|您(?:现在)?的位置|所在位置)",
    r"^(?:发布|发表|更新|成文|印发)(?:时间|日期)\s*[:：]",
    r"^(?:浏览|阅读|访问|点击)(?:次数|量|数)?\s*[:：]",
    r"^浏览次数",
    r"^字\s*号\s*[:：]",
    r"^【?\s*字体\s*[:：]?",
    r"^【?\s*字号",
    r"^(?:打印本页|打印此页|打印|关闭窗口|关闭本页|关闭)(?:\s*[|｜]\s*(?:关闭窗口|打印本页|关闭|打印))*\s*$",
    r"^[\[【［]?\s*(?:上一篇|下一篇)",
    r"^(?:索引号|主题分类|公开方式|公开范围|信息来源|来源|发文日期|发布机构|发文机关|有效性|标题|文\s*号|责任编辑|编辑|作者|分享到|扫一扫)\s*[:：]",
    r"^(?:解读地址|解读链接|政策解读|相关链接|相关阅读|附件下载)",
    r"^(?:文章正文|正文|扫一扫在手机打开当前页|收藏|下载|全屏|分享)$",
    r"^下载\s+打印",
    r"^内容提要\s*[:：]",
    r"^[-—－]*\s*\d{1,3}\s*[-—－]*$",
    r"^\d{4}\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*日$",
    r"^\d{1,4}[./-]\d{1,2}[./-]\d{1,4}(?:\s+\d{1,2}:\d{2}(?::\d{2})?)?$",
    r"^[\u4e00-\u9fff]{1,12}[〔\[［(（]\s*\d{4}\s*[〕\]］)）]\s*\d+\s*号$",
    r"^[|｜/\\\s]*$",
    r"ICP备|公网安备|网站标识码|版权所有|Copyright|©",
    r"(?i)\.(?:jpe?g|png|gif|bmp)$",
    r"^!\[[^\]]*\]\([^)]*\)$",
    r"^[（(]此件(?:主动)?公开(?:发布)?[)）]$",
    r"^特此(?:报告|公告|通告|通知)[。.]?$",
    r"转载请(?:注明|附上)|欢迎访问|即将离开",
    r"^[（(]?左右滑动查看",
)]
_FIELD = {
    "doc_number": re.compile(r"文\s*号\s*[:：]\s*(\S+)"),
    "issuer": re.compile(r"(?:发布机构|发文机关)\s*[:：]\s*(\S+)"),
    "title": re.compile(r"^标题\s*[:：]\s*(.+)$"),
    "date": re.compile(r"(?:发文日期|发布日期|发布时间|成文日期)\s*[:：]\s*(\d{4}[-./年]\d{1,2}[-./月]\d{1,2})"),
}
_DOCNUM_LINE = re.compile(r"^[\u4e00-\u9fff]{1,12}[〔\[［(（]\s*\d{4}\s*[〕\]］)）]\s*\d+\s*号$")
_DATE_CN = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日")
# day.month.year is how the sites that print "01.09.2017" mean it
_DATE_NUM = re.compile(r"(\d{4})[-./](\d{1,2})[-./](\d{1,2})|(\d{1,2})\.(\d{1,2})\.(\d{4})")
_SENTENCE_PUNCT = re.compile(r"[，,。；;！？]")
_TITLE_WORDS = re.compile(r"报告|汇报|情况|纲要|总结|通报|意见|方案")
_ISSUER = re.compile(r"(?:人民政府|政府|委员会|司法局|局|办公室|办)$")
_REGION = re.compile(
    r"([\u4e00-\u9fff]{1,8}?(?:省|自治区|特别行政区|市|自治州|州|盟|地区|县|区|旗))"
    r"(?=人民政府|政府|委|司法局|关于|贯彻|法治|\d|年度|依法|全面|推进)"
)
_YEAR = re.compile(r"(?<![-—－~至到])((?:19|20)\d{2})\s*年")  # not the end of a range
_ITEM_CN = re.compile(rf"(?:^|(?<=[。；;：:，,\s]))([{_CN}]+)是")
_ITEM_PAREN = re.compile(r"[（(]\s*(\d{1,2})\s*[)）]")
_ITEM_CIRCLED = re.compile(r"[①②③④⑤⑥⑦⑧⑨⑩]")
_SENT_END = "。！？"
_OPENING = re.compile(r"如下\s*[:：]$")  # "现将…情况报告如下：" opens the report's content
_CELL_NUMBER = re.compile(r"^\d+(?:\.\d+)?%?$")
_CN_DIGITS = {c: i for i, c in enumerate("一二三四五六七八九十", start=1)}


def clean_lines(text: str) -> list[str]:
    """Normalise line breaks, drop zero-width marks; return the non-empty stripped lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for ch in ("\u200b", "\u200c", "\u200d", "\ufeff", "\u2060"):
        text = text.replace(ch, "")
    return [line.strip() for line in text.split("\n") if line.strip()]


def is_furniture(line: str) -> bool:
    """True for web-page furniture and other lines that carry no report content."""
    core = line.strip(_BULLETS)
    return not core or any(p.search(core) for p in FURNITURE)


def match_marker(line: str) -> tuple[str, re.Match[str]] | None:
    """The numbering style of a line and its match, or None for an unnumbered line."""
    for style, pattern in MARKERS:
        m = pattern.match(line)
        if m:
            return style, m
    return None


def split_title(rest: str) -> tuple[str | None, bool]:
    """For the text after a numbering marker, return (title, is_heading).

    A line that is only a short phrase is a heading; a short title ended by 。 and
    followed by sentences is a body paragraph with that title; a long run-on line
    is a body paragraph without title.
    """
    depth = 0
    for i, ch in enumerate(rest):
        if ch in "《“（(":
            depth += 1
        elif ch in "》”）)":
            depth = max(0, depth - 1)
        elif ch in _SENT_END and depth == 0:
            if rest[i + 1:].strip():
                return (rest[:i], False) if i <= 80 else (None, False)
            return rest[:i], len(rest) <= 60
    return (rest, True) if len(rest) <= 60 else (None, False)


def find_items(text: str) -> list[str]:
    """Inline enumerations as separate strings: 一是…二是…, (1)…(2)…, ①…②…

    A chain must start at one and count up; fewer than two items is no enumeration.
    """
    for pattern, value in (
        (_ITEM_CN, lambda m: _CN_DIGITS.get(m.group(1), 0)),
        (_ITEM_PAREN, lambda m: int(m.group(1))),
        (_ITEM_CIRCLED, lambda m: "①②③④⑤⑥⑦⑧⑨⑩".index(m.group(0)) + 1),
    ):
        starts, expected = [], 1
        for m in pattern.finditer(text):
            if value(m) == expected:
                starts.append(m.start())
                expected += 1
        if len(starts) >= 2:
            bounds = starts + [len(text)]
            return [text[a:b].strip().rstrip("，,；;") for a, b in zip(bounds, bounds[1:]) if text[a:b].strip()]
    return []


def _content_start(lines: list[str]) -> int:
    """Index of the first line of report content (numbered, or a real sentence)."""
    for i, line in enumerate(lines):
        if is_furniture(line):
            continue
        if match_marker(line):
            return i
        if (_SENTENCE_PUNCT.search(line) and len(line) > 30) or _OPENING.search(line):
            return i
    return len(lines)


def _short_plain(line: str, max_chars: int) -> bool:
    """A line of at most ``max_chars`` without sentence punctuation or numbering, such as a
    signature's or a table cell's."""
    return len(line) <= max_chars and not _SENTENCE_PUNCT.search(line) and not match_marker(line)


def _next_content(lines: list[str], span: range) -> str | None:
    """The first line at the indices of ``span``, in its order, that is not furniture."""
    return next((lines[j] for j in span if not is_furniture(lines[j])), None)


def _content_end(lines: list[str], start: int) -> int:
    """One past the last content line: signatures, dates and furniture at the end are meta."""
    end = len(lines)
    while end > start:
        line = lines[end - 1]
        if is_furniture(line) or _short_plain(line, 25):
            end -= 1
        else:
            break
    # A table that closes the text is content, though its cells are short plain lines like a
    # signature's: three numbers or more among them (a signature has a date, a footer a counter
    # or two) mark one, which runs to its last number.
    numbers = [i for i in range(end, len(lines)) if _CELL_NUMBER.match(lines[i])]
    return numbers[-1] + 1 if len(numbers) >= 3 else end


def _is_cell(line: str) -> bool:
    """A line that can be a table cell: a number, or a short label without sentence punctuation."""
    return bool(_CELL_NUMBER.match(line)) or _short_plain(line, 15)


def _table_numbers(lines: list[str]) -> set[int]:
    """Indices of bare numbers that sit in a table (next to another cell); a bare number
    between paragraphs is a page number."""
    return {i for i, line in enumerate(lines) if _CELL_NUMBER.match(line)
            and any(0 <= j < len(lines) and _is_cell(lines[j]) for j in (i - 1, i + 1))}


def _is_list_item(lines: list[str], i: int, start: int, end: int, style: str) -> bool:
    """A numbered short sentence (``lines[i]``, numbering ``style``) is an item of a list, not a
    section's title, when the next content line is numbered alike or the previous one is a
    sentence numbered alike: a title is followed by its section's text."""
    for line, needs_sentence in ((_next_content(lines, range(i + 1, end)), False),
                                 (_next_content(lines, range(i - 1, start - 1, -1)), True)):
        marker = match_marker(line) if line else None
        if marker and marker[0] == style and (not needs_sentence or line.endswith(tuple(_SENT_END))):
            return True
    return False


def _is_plain_title(lines: list[str], i: int, end: int) -> bool:
    """An unnumbered short phrase (no sentence or colon at its end) followed by a paragraph of
    text titles that paragraph's section, as news-style reports head their sections."""
    line = lines[i]
    if len(line) > 30 or line.endswith(tuple(_SENT_END) + tuple("!?…；;：:")) or _CELL_NUMBER.match(line):
        return False
    return len(_next_content(lines, range(i + 1, end)) or "") > 40


def _iso_date(text: str) -> str | None:
    m = _DATE_CN.search(text)
    if m:
        y, mo, d = m.groups()
    else:
        m = _DATE_NUM.search(text)
        if not m:
            return None
        y, mo, d = m.group(1, 2, 3) if m.group(1) else (m.group(6), m.group(5), m.group(4))
    return f"{int(y):04d}-{int(mo):02d}-{int(d):02d}"


def extract_meta(meta_lines: list[str], body_lines: list[str]) -> dict:
    """Title, issuer, date, 文号, region and reported year from the meta lines."""
    meta: dict = {"title": None, "issuer": None, "date": None, "doc_number": None,
                  "region": None, "year": None, "lines": meta_lines}
    for line in meta_lines:
        core = line.strip(_BULLETS)
        for key, pattern in _FIELD.items():
            m = pattern.search(core)
            if m and not meta[key]:
                meta[key] = _iso_date(m.group(1)) if key == "date" else m.group(1).strip()
        if not meta["doc_number"] and _DOCNUM_LINE.match(core):
            meta["doc_number"] = core
        if not meta["date"] and (_DATE_CN.fullmatch(core) or _DATE_NUM.fullmatch(core.split()[0])):
            meta["date"] = _iso_date(core)
    plain = [l for l in meta_lines if not is_furniture(l) and not l.endswith((":", "："))]
    if not meta["title"]:
        meta["title"] = next((l for l in plain if _TITLE_WORDS.search(l)), plain[0] if plain else None)
    if not meta["issuer"]:
        meta["issuer"] = next((l for l in plain if len(l) <= 20 and _ISSUER.search(l) and l != meta["title"]), None)
    probe = " ".join(filter(None, [meta["title"], *body_lines[:1]]))
    m = _REGION.search(probe)
    meta["region"] = m.group(1) if m else None
    m = re.search(r"((?:19|20)\d{2})\s*年度?", meta["title"] or "")
    if m:
        meta["year"] = int(m.group(1))
    else:
        years = Counter(int(y) for y in _YEAR.findall("\n".join(body_lines)))
        cap = int(meta["date"][:4]) if meta["date"] else 9999
        # the latest year mentioned twice or more, not after publication
        recurring = [y for y, n in years.items() if y <= cap and n >= 2]
        meta["year"] = max(recurring) if recurring else (years.most_common(1)[0][0] if years else None)
    return meta


def parse_text(text: str) -> Document:
    """Parse report text into a :class:`Document` (meta + outline paragraphs)."""
    lines = clean_lines(text)
    cleaned = "\n".join(lines)
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1

    start = _content_start(lines)
    end = _content_end(lines, start)
    cells = _table_numbers(lines)
    meta_lines: list[str] = []
    paragraphs: list[Paragraph] = []
    # stack of (numbering style, heading text or None for an untitled numbered body)
    stack: list[tuple[str, str | None]] = []
    for i, line in enumerate(lines):
        if i < start or i >= end or (is_furniture(line) and i not in cells):
            meta_lines.append(line)
            continue
        marker = match_marker(line)
        title, kind = None, "body"
        if marker or _is_plain_title(lines, i, end):
            style, m = marker or ("plain", None)
            if m:
                rest = line[m.end():].strip()
                title, is_heading = split_title(rest)
                is_heading = is_heading and not (rest.endswith(tuple(_SENT_END))
                                                 and _is_list_item(lines, i, start, end, style))
            else:
                is_heading = True
            kind = "heading" if is_heading else "body"
            styles = [s for s, _ in stack]
            if style in styles:
                del stack[styles.index(style):]
            path = [t for _, t in stack if t]
            level = len(stack) + 1
            label = line if kind == "heading" else (line[:m.end()] + title if title else None)
            stack.append((style, label))
        else:
            path = [t for _, t in stack if t]
            level = len(stack) + 1
        paragraphs.append(Paragraph(
            id=f"p{len(paragraphs) + 1}", kind=kind, level=level, heading_path=path, text=line,
            start=offsets[i], end=offsets[i] + len(line),
            title=title if kind == "body" else None,
            items=find_items(line) if kind == "body" else [],
        ))
    body_lines = [p.text for p in paragraphs if p.kind == "body"]
    return Document(text=cleaned, meta=extract_meta(meta_lines, body_lines), paragraphs=paragraphs)


def to_markdown(doc: Document) -> str:
    """Render the outline for a person: headings as markdown headings, bodies as text."""
    out = []
    title = doc.meta.get("title")
    if title:
        out.append(f"# {title}\n")
    facts = [f"{k}: {doc.meta[k]}" for k in ("issuer", "date", "doc_number", "region", "year") if doc.meta.get(k)]
    if facts:
        out.append("> " + " · ".join(facts) + "\n")
    for p in doc.paragraphs:
        if p.kind == "heading":
            out.append(f"{'#' * min(p.level + 1, 6)} {p.text}\n")
        else:
            out.append(f"{p.text}\n")
            out.extend(f"  - {item}" for item in p.items)
            if p.items:
                out.append("")
    return "\n".join(out)
