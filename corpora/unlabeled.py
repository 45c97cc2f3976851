"""Unlabeled paragraphs from any source ``fazhi corpus build`` reads: the text of JSONL corpora
(``{"id", "title", "text"}`` records, e.g. the shared government work reports, laws and
enforcement documents), of gold-format files (their lines, labels ignored) and of report
files (their parsed paragraphs). Domain-adaptive pretraining and distillation read them.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Iterable, Iterator

from tqdm import tqdm

from fazhi.corpora import read_document
from fazhi.corpora.dataset import _sources
from fazhi.corpora.gold import read_gold_file
from fazhi.corpora.reader import iter_jsonl
from fazhi.errors import FazhiError

_COMMENT = re.compile(r"<!--.*?-->", re.S)  # the laws' "<!-- INFO END -->" markers
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2060\ufeff]")  # zero-width characters of the Wikisource texts
_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])")


def clean_line(line: str) -> str:
    """One source line as plain text: Markdown heading marks, comments, invisible characters and
    runs of white space removed."""
    line = _INVISIBLE.sub("", _COMMENT.sub("", line))
    return re.sub(r"\s+", " ", line.lstrip("#> ")).strip()


def chunks(line: str, max_chars: int) -> Iterator[str]:
    """``line`` cut into pieces of at most ``max_chars`` characters, at sentence ends where it has
    them (a sentence longer than ``max_chars`` is cut where it passes the limit)."""
    if len(line) <= max_chars:
        yield line
        return
    piece = ""
    for sentence in (s for s in _SENTENCE_END.split(line) if s):
        while len(sentence) > max_chars:
            if piece:
                yield piece
                piece = ""
            yield sentence[:max_chars]
            sentence = sentence[max_chars:]
        if piece and len(piece) + len(sentence) > max_chars:
            yield piece
            piece = ""
        piece += sentence
    if piece:
        yield piece


def _file_lines(kind: str, path: Path) -> Iterator[str]:
    """The raw text lines of one source file of ``kind`` (report, gold or corpus)."""
    if kind == "report":
        yield from (p.text for p in read_document(path).paragraphs)
    elif kind == "gold":
        yield from (r["text"] for r in read_gold_file(path))
    else:
        with path.open(encoding="utf-8") as fh:
            for n, record in iter_jsonl(fh, str(path)):
                if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                    raise FazhiError(f"{path}:{n}", "expected a JSON object with a 'text' string")
                yield from record["text"].split("\n")


def source_paragraphs(source: str | Path, min_chars: int = 20, max_chars: int = 400) -> list[str]:
    """Distinct paragraphs (``min_chars``..``max_chars`` characters) of one file or folder, in reading order."""
    seen: set[str] = set()
    out = []
    for kind, path in _sources([source]):
        for line in _file_lines(kind, path):
            for piece in chunks(clean_line(line), max_chars):
                if len(piece) >= min_chars and piece not in seen:
                    seen.add(piece)
                    out.append(piece)
    return out


def unlabeled_paragraphs(sources: Iterable[str | Path], min_chars: int = 20, max_chars: int = 400,
                         max_per_source: int | None = None, seed: int = 13, progress: bool = False) -> list[str]:
    """Distinct paragraphs of every source (files or folders), each source cut to a random
    ``max_per_source`` of its paragraphs (kept in reading order), so that a large corpus
    (the 20 million characters of laws) does not drown the small ones.

    A source that yields nothing is a :class:`FazhiError`, as is a missing one.
    """
    if min_chars < 1 or max_chars < min_chars:
        raise FazhiError("--max-chars", f"need 1 ≤ min_chars ≤ max_chars, got {min_chars} and {max_chars}")
    sources = list(sources)
    if not sources:
        raise FazhiError("--corpus", "no corpus given")
    seen: set[str] = set()
    out: list[str] = []
    for source in tqdm(sources, desc="reading corpora", unit="source", disable=not progress):
        paras = source_paragraphs(source, min_chars, max_chars)
        if not paras:
            raise FazhiError(str(source), f"no paragraphs of {min_chars} to {max_chars} characters")
        if max_per_source is not None and len(paras) > max_per_source:
            keep = sorted(random.Random(f"{seed}:{source}").sample(range(len(paras)), max_per_source))
            paras = [paras[i] for i in keep]
        for p in paras:
            if p not in seen:
                seen.add(p)
                out.append(p)
    return out
