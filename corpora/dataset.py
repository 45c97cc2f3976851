"""Build the silver training corpus as a ``datasets.DatasetDict`` (split by document)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from tqdm import tqdm

from fazhi.corpora import read_document
from fazhi.corpora.distant import corpus_examples
from fazhi.corpora.gold import human_examples, is_gold_file
from fazhi.corpora.labelling import contexts_for_document, label
from fazhi.corpora.reader import SUPPORTED, iter_jsonl
from fazhi.corpora.taxonomy import Taxonomy
from fazhi.errors import FazhiError

COLUMNS = ["text", "category", "shortcoming", "confidence", "doc_id", "heading_path", "kind", "label_source"]


def report_examples(path: Path, tax: Taxonomy, origin: str) -> Iterator[dict]:
    """Silver-labelled paragraphs (headings and bodies) of one report file."""
    doc = read_document(path)
    for para, ctx in zip(doc.paragraphs, contexts_for_document(doc)):
        lab = label(ctx, tax)
        yield {"text": para.text, "category": lab.category, "shortcoming": lab.shortcoming,
               "confidence": lab.confidence, "heading_path": para.heading_path, "kind": para.kind,
               "label_source": f"{origin}:{lab.category_source}+{lab.shortcoming_source}"}


def _sources(paths: Iterable[str | Path]) -> list[tuple[str, Path]]:
    """Expand directories into (kind, file) pairs: 'report', 'gold' (human-labelled JSONL in
    the gold format) or 'corpus' (any other JSONL)."""
    out = []
    for src in map(Path, paths):
        if not src.exists():
            raise FazhiError(str(src), "no such file or directory")
        files = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
        for f in files:
            if f.suffix.lower() == ".jsonl":
                out.append(("gold" if is_gold_file(f) else "corpus", f))
            elif f.suffix.lower() in SUPPORTED and f.name not in ("SOURCE.md", "README.md"):
                out.append(("report", f))
    if not out:
        raise FazhiError(", ".join(map(str, paths)), "no report files (.txt/.html/.docx/.pdf) or corpora (.jsonl) found")
    return out


def collect(paths: Iterable[str | Path], tax: Taxonomy, progress: bool = True) -> list[dict]:
    """Labelled examples from every source, with ``doc_id`` set per document: silver labels
    for reports and corpora, the file's own for gold files (``label_source`` ``human:<folder>``)."""
    rows: list[dict] = []
    sources = _sources(paths)
    for kind, path in tqdm(sources, desc="labelling", unit="file", disable=not progress):
        if kind == "gold":
            rows += [{**row, "doc_id": f"human/{path.stem}"} for row in human_examples(path, path.parent.name)]
        elif kind == "report":
            origin = "synthetic" if "synthetic" in path.parts else "report"
            for row in report_examples(path, tax, origin):
                rows.append({**row, "doc_id": f"{origin}/{path.stem}"})
        else:
            corpus = path.stem
            with path.open(encoding="utf-8") as fh:
                for n, record in iter_jsonl(fh, str(path)):
                    for row in corpus_examples(record, corpus, tax):
                        rows.append({**row, "kind": "body", "doc_id": f"{corpus}/{record.get('id', n)}"})
    return rows


def split_by_document(rows: list[dict], validation: float = 0.15, seed: int = 13) -> tuple[list[dict], list[dict]]:
    """Train/validation split by ``doc_id``: no document on both sides.

    A document goes to validation when a hash of (seed, doc_id) falls under the
    fraction, so the split is stable when sources are added.
    """
    def bucket(doc_id: str) -> float:
        digest = hashlib.sha1(f"{seed}:{doc_id}".encode()).hexdigest()
        return int(digest[:8], 16) / 0xFFFFFFFF

    train = [r for r in rows if bucket(r["doc_id"]) >= validation]
    val = [r for r in rows if bucket(r["doc_id"]) < validation]
    return train, val


def features():
    """The corpus schema, stated so that an empty split saves and loads like a full one."""
    from datasets import Features, List, Value

    return Features({"text": Value("string"), "category": Value("string"), "shortcoming": Value("bool"),
                     "confidence": Value("float64"), "doc_id": Value("string"),
                     "heading_path": List(Value("string")), "kind": Value("string"),
                     "label_source": Value("string")})


def build(paths: Iterable[str | Path], out: str | Path, tax: Taxonomy, validation: float = 0.15,
          seed: int = 13, progress: bool = True, validation_sources: Iterable[str | Path] = ()):
    """Label every source and save a DatasetDict to ``out``.

    Without ``validation_sources`` the documents are split by a hash of their id (a share
    ``validation`` in validation); with them, every row of ``paths`` trains and the
    validation split is exactly ``validation_sources`` (e.g. a human-labelled dev set).
    """
    from datasets import Dataset, DatasetDict

    rows = collect(paths, tax, progress=progress)
    if not rows:
        raise FazhiError(", ".join(map(str, paths)), "no labelled examples could be made from these sources")
    validation_sources = list(validation_sources)
    if validation_sources:
        train, val = rows, collect(validation_sources, tax, progress=progress)
        shared = {r["doc_id"] for r in train} & {r["doc_id"] for r in val}
        if shared:
            raise FazhiError(", ".join(map(str, validation_sources)),
                             f"{len(shared)} documents are also training sources (e.g. {sorted(shared)[0]})")
    else:
        train, val = split_by_document(rows, validation, seed)
    columns = lambda rs: {c: [r[c] for r in rs] for c in COLUMNS}  # noqa: E731
    dd = DatasetDict({"train": Dataset.from_dict(columns(train), features=features()),
                      "validation": Dataset.from_dict(columns(val), features=features())})
    # one shard per split: datasets writes no shard for an empty split and then cannot reload it
    dd.save_to_disk(str(out), num_shards={split: 1 for split in dd})
    return dd


def load(path: str | Path):
    """Load a corpus saved by :func:`build`, with a clear error when it is not one."""
    from datasets import load_from_disk

    path = Path(path)
    if not (path / "dataset_dict.json").is_file():
        raise FazhiError(str(path), "not a corpus directory (no dataset_dict.json); make one with `fazhi corpus build`")
    state = path / "train" / "state.json"
    if state.is_file() and not json.loads(state.read_text()).get("_data_files"):
        raise FazhiError(str(path), "the train split is empty")
    try:
        dd = load_from_disk(str(path))
    except Exception as err:  # datasets raises many types for a damaged directory
        raise FazhiError(str(path), f"cannot read the corpus: {err.__class__.__name__}: {err}") from None
    missing = [c for c in ("text", "category", "shortcoming") if c not in dd["train"].column_names]
    if missing:
        raise FazhiError(str(path), f"corpus lacks columns {missing}")
    if len(dd["train"]) == 0:
        raise FazhiError(str(path), "the train split is empty")
    return dd


def stats(dd) -> dict:
    """Counts per split, label, source family and document."""
    out = {}
    for split, ds in dd.items():
        cats, sc = Counter(ds["category"]), Counter(ds["shortcoming"])
        sources = Counter(s.split(":")[0] + ":" + s.split(":")[1].split("+")[0] for s in ds["label_source"])
        docs = Counter(ds["doc_id"])
        out[split] = {"paragraphs": len(ds), "documents": len(docs), "category": dict(cats.most_common()),
                      "shortcoming": {str(k).lower(): v for k, v in sc.items()},
                      "label_source": dict(sources.most_common()), "per_document": dict(docs.most_common())}
    return out
