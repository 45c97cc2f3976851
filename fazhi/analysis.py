"""The analysis pipeline: report → parsed document → tagged paragraphs → digest, in one object.

In the spirit of spaCy's ``nlp``: ``Analyzer(model)`` holds the swappable parts (the
classifier, the digest's settings), ``analyze(source)`` runs them over one report and
``pipe(sources)`` over many, classifying the paragraphs of several reports in one model
call. ``fazhi tag``, ``fazhi summarize``, ``fazhi evaluate``, ``fazhi bench`` and
``POST /v1/reports`` all go through it.

>>> analysis = Analyzer("rules").analyze("report.docx")        # doctest: +SKIP
>>> analysis.predictions[0].category, analysis.digest.summary  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable, Iterator, Union

from fazhi.corpora import Document, read_document
from fazhi.errors import LimitError
from fazhi.models.base import Classifier, Prediction, document_inputs, tagged_paragraphs
from fazhi.models.digest import SUMMARY_CHARS, Digest, build_digest
from fazhi.models.registry import load_classifier
from fazhi.settings import Settings, settings

Source = Union[str, Path, Document]  # a report file (txt, html, docx, pdf) or an already parsed report
PIPE_PARAGRAPHS = 512  # paragraphs per model call in pipe(): a few reports' worth, bounded memory


@dataclass
class Analysis:
    """One analysed report: ``predictions[i]`` labels ``document.paragraphs[i]``; the digest is
    built on first use (it costs more than tagging and ``fazhi tag`` never needs it)."""

    document: Document
    predictions: list[Prediction]
    classifier: Classifier = field(repr=False)
    source: str = "report"
    summary_chars: int = SUMMARY_CHARS

    @cached_property
    def digest(self) -> Digest:
        """Summary, coverage, shortcomings, figures and highlights (:class:`FazhiError` for a report
        without body paragraphs)."""
        return build_digest(self.document, self.predictions, self.classifier, summary_chars=self.summary_chars,
                            source=self.source)

    def paragraphs(self) -> list[dict]:
        """Each paragraph's fields with its labels: the ``fazhi tag --format json`` paragraph objects."""
        return tagged_paragraphs(self.document, self.predictions)


class Analyzer:
    """Parse, tag and digest reports with one classifier.

    ``model``: a classifier object, or what :func:`~fazhi.models.registry.load_classifier` takes
    (``rules``, ``tfidf``, a model directory; None: the release model). ``summary_chars``: the
    digest's summary length in characters. ``max_paragraphs``: a longer report is a
    :class:`LimitError` before any tagging (default ``$FAZHI_MAX_REPORT_PARAGRAPHS``), so one
    report's time and memory stay bounded. ``reading``: the settings files are read with (size
    limits, OCR mode; default: from the environment).
    """

    def __init__(self, model: Classifier | str | Path | None = None, summary_chars: int = SUMMARY_CHARS,
                 max_paragraphs: int | None = None, reading: Settings | None = None):
        self.classifier: Classifier = model if hasattr(model, "predict") else load_classifier(model)
        self.summary_chars = summary_chars
        self.reading = reading or settings()  # how files are read: size limits, OCR
        self.max_paragraphs = max_paragraphs or self.reading.max_report_paragraphs

    def analyze(self, source: Source, name: str | None = None) -> Analysis:
        """One report; ``name`` names it in errors (default: the file's path)."""
        return next(self.pipe([source], names=[name] if name else None))

    def pipe(self, sources: Iterable[Source], names: Iterable[str] | None = None,
             batch_paragraphs: int = PIPE_PARAGRAPHS) -> Iterator[Analysis]:
        """Analyses of ``sources`` in order. Reports are read one at a time and their paragraphs
        classified together, about ``batch_paragraphs`` per model call."""
        names = iter(names) if names is not None else None
        pending: list[tuple[Document, str]] = []
        size = 0
        for source in sources:
            name = next(names) if names is not None else (str(source) if not isinstance(source, Document) else "report")
            doc = source if isinstance(source, Document) else read_document(source, settings=self.reading)
            if len(doc.paragraphs) > self.max_paragraphs:
                raise LimitError(name, f"report has {len(doc.paragraphs)} paragraphs, over the limit "
                                       f"FAZHI_MAX_REPORT_PARAGRAPHS={self.max_paragraphs}")
            pending.append((doc, name))
            size += len(doc.paragraphs)
            if size >= batch_paragraphs:
                yield from self._tag(pending)
                pending, size = [], 0
        if pending:
            yield from self._tag(pending)

    def _tag(self, docs: list[tuple[Document, str]]) -> Iterator[Analysis]:
        texts, paths = [], []
        for doc, _ in docs:
            t, p = document_inputs(doc)
            texts += t
            paths += p
        preds = self.classifier.predict(texts, paths)
        start = 0
        for doc, name in docs:
            end = start + len(doc.paragraphs)
            yield Analysis(doc, preds[start:end], self.classifier, name, self.summary_chars)
            start = end
