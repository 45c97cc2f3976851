"""The endpoints: classification, reports, paragraph search, health and the model card."""

from __future__ import annotations

from pathlib import PurePath
from typing import Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from fazhi.analysis import Analyzer
from fazhi.corpora import parse_text
from fazhi.corpora.reader import SUPPORTED, read_bytes
from fazhi.corpora.taxonomy import load_taxonomy
from fazhi.models.compare import Comparison, Side, compare
from fazhi.models.digest import Digest
from fazhi.models.embed import Embedder
from fazhi.serving import schemas as s
from fazhi.serving.deps import ApiKey, AppSettings, ModelBatcher, Store, read_access, reviewer_of, write_access
from fazhi.serving.limits import REPORT_ID_CHARS
from fazhi.serving.store import ParagraphQuery, ReportQuery, ReportRecord, ReportStore
from fazhi.settings import Settings

# Every SQLite call, file read and parse below goes through run_in_threadpool: these routes are
# async (they await the batcher), so a blocking call here would stall every other request.
router = APIRouter()

_ERRORS = {code: {"model": s.ErrorOut} for code in (400, 401, 403, 404, 413, 415, 422, 503)}


# --- health ---------------------------------------------------------------------------------------------------

@router.get("/healthz", tags=["health"], summary="The process is up")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], summary="Model loaded and database writable",
            responses={503: {"model": s.ErrorOut}})
async def readyz(store: Store, batcher: ModelBatcher):
    if not await run_in_threadpool(store.writable):
        raise HTTPException(503, "database is not writable")
    return {"status": "ready", "model": batcher.clf.name}


@router.get("/v1/model", tags=["model"], response_model=s.ModelInfo, dependencies=[Depends(read_access)],
            summary="The model card: name, labels, metrics")
async def model_info(batcher: ModelBatcher, settings: AppSettings) -> s.ModelInfo:
    from fazhi.models.registry import model_card

    metrics, card = await run_in_threadpool(model_card, settings.model)  # reads the model's files
    return s.ModelInfo(name=batcher.clf.name, labels=list(batcher.clf.labels), metrics=metrics, card=card,
                       batching=batcher.enabled, model_calls=batcher.batches)


# --- classification ---------------------------------------------------------------------------------------------

@router.post("/v1/classify", tags=["classify"], response_model=s.ClassifyResponse, responses=_ERRORS,
             dependencies=[Depends(read_access)], summary="Tag paragraphs sent alone or with their heading path")
async def classify(body: s.ClassifyRequest, batcher: ModelBatcher, settings: AppSettings) -> s.ClassifyResponse:
    if len(body.paragraphs) > settings.max_paragraphs:
        raise HTTPException(413, f"{len(body.paragraphs)} paragraphs, over the limit max_paragraphs="
                                 f"{settings.max_paragraphs}")
    items = [p if isinstance(p, s.ParagraphIn) else s.ParagraphIn(text=p) for p in body.paragraphs]
    for i, p in enumerate(items):
        if len(p.text) > settings.max_paragraph_chars:
            raise HTTPException(422, f"paragraphs.{i}: {len(p.text)} characters, over the limit "
                                     f"max_paragraph_chars={settings.max_paragraph_chars}")
    preds = await batcher.predict([p.text for p in items], [p.heading_path for p in items])
    return s.ClassifyResponse(results=[s.ClassifyResult(text=p.text, **r.to_dict()) for p, r in zip(items, preds)],
                              model=batcher.clf.name)


# --- reports ----------------------------------------------------------------------------------------------------

_REPORT_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": s.ReportIn.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": f"One of {', '.join(SUPPORTED)}"},
        "title": {"type": "string"}, "region": {"type": "string"}, "year": {"type": "integer"}}}}}}}


async def _report_input(request: Request, settings: Settings) -> tuple[str, s.ReportIn]:
    """The uploaded or posted report as text plus its given title/region/year, and the source name for
    errors; ``settings`` bound the upload (``max_bytes``) and its decompressed size."""
    limit = settings.max_bytes
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            return "request body", s.ReportIn.model_validate_json(await request.body())
        except ValidationError as err:
            raise RequestValidationError(err.errors()) from None
    if kind != "multipart/form-data":
        raise HTTPException(415, f"content-type {kind or '(none)'}: send application/json or multipart/form-data")
    form = await request.form(max_part_size=limit)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise HTTPException(422, "file: a report file upload is required")
    name = PurePath(upload.filename or "upload").name
    if PurePath(name).suffix.lower() not in SUPPORTED:
        raise HTTPException(415, f"{name}: unsupported file type; send one of {', '.join(SUPPORTED)}")
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"{name}: over the limit FAZHI_MAX_BYTES={limit}")
    # PDF/docx parsing takes seconds: off the event loop
    text = await run_in_threadpool(read_bytes, data, PurePath(name).suffix, name, settings)
    fields = {k: v for k in ("title", "region", "year") if isinstance(v := form.get(k), str) and v}
    try:
        return name, s.ReportIn(text=text, **fields)
    except ValidationError as err:
        raise RequestValidationError(err.errors()) from None


ANALYSES = 4  # reports analysed at once; more uploads wait their turn without holding a thread


def _analyses(request: Request) -> anyio.CapacityLimiter:
    state = request.app.state
    if getattr(state, "analyses", None) is None:
        state.analyses = anyio.CapacityLimiter(ANALYSES)
    return state.analyses


def _tag(report: s.ReportIn, source: str, analyzer: Analyzer) -> ReportRecord:
    """Parse, tag and digest one report (in a worker thread; the model calls go through the batcher)."""
    analysis = analyzer.analyze(parse_text(report.text), name=source)
    doc = analysis.document
    return ReportRecord(meta=doc.meta, paragraphs=analysis.paragraphs(),
                        model=analyzer.classifier.name, title=report.title or doc.meta.get("title"),
                        region=report.region or doc.meta.get("region"), year=report.year or doc.meta.get("year"),
                        source=source if source != "request body" else None, digest=analysis.digest.to_dict())


@router.post("/v1/reports", tags=["reports"], status_code=201, response_model=s.ReportOut,
             responses=_ERRORS, openapi_extra=_REPORT_BODY, dependencies=[Depends(write_access)],
             summary="Parse, tag, digest and store a report (file upload or JSON text)")
async def post_report(request: Request, store: Store, batcher: ModelBatcher, settings: AppSettings) -> s.ReportOut:
    source, report = await _report_input(request, settings)
    # the analysis runs in a worker thread; its model calls queue as bulk work behind /v1/classify requests
    analyzer = Analyzer(batcher.bulk_classifier(), max_paragraphs=settings.max_report_paragraphs)
    # threads of their own: uploads waiting on the model never take the pool's slots from store reads
    record = await anyio.to_thread.run_sync(_tag, report, source, analyzer, limiter=_analyses(request))
    report_id = await run_in_threadpool(store.add, record)
    return s.ReportOut.model_validate(await run_in_threadpool(store.get, report_id))


@router.get("/v1/reports", tags=["reports"], response_model=s.ReportList, dependencies=[Depends(read_access)],
            responses=_ERRORS, summary="Stored reports, oldest first")
async def list_reports(store: Store, limit: int = Query(50, ge=1, le=500), cursor: str | None = None,
                       region: str | None = Query(None, max_length=s.REGION_CHARS),
                       year: int | None = Query(None, ge=s.YEAR_MIN, le=s.YEAR_MAX),
                       q: str | None = Query(None, max_length=200, description="Text the title contains")) -> s.ReportList:
    query = ReportQuery(region=region or None, year=year, q=q or None)
    items, next_cursor = await run_in_threadpool(store.list, limit, cursor, query)
    return s.ReportList(items=items, next_cursor=next_cursor)


def _no_report(report_id: str) -> HTTPException:
    """404 for an unknown report id, echoing the id only when it is of a plausible length."""
    shown = f" {report_id!r}" if len(report_id) <= REPORT_ID_CHARS else ""
    return HTTPException(404, f"report{shown} not found")


async def _stored(store: ReportStore, report_id: str) -> dict:
    report = await run_in_threadpool(store.get, report_id)
    if report is None:
        raise _no_report(report_id)
    return report


@router.get("/v1/reports/{report_id}", tags=["reports"], response_model=s.ReportOut,
            dependencies=[Depends(read_access)], responses={**_ERRORS, 200: {"content": {"text/markdown": {}}}},
            summary="A tagged report (format=md for a readable page)")
async def get_report(store: Store, report_id: str, format: Literal["json", "md"] = "json"):
    report = await _stored(store, report_id)
    if format == "json":
        return report
    page = await run_in_threadpool(_markdown, report)  # a long report's page takes a while to render
    return PlainTextResponse(page, media_type="text/markdown; charset=utf-8")


def _markdown(report: dict) -> str:
    """The readable page of a stored report: its digest, then the tagged outline."""
    from fazhi.render import digest_markdown, tagged_markdown

    title = report["title"] or report["id"]
    digest = _digest(report)
    page = digest_markdown(digest, load_taxonomy().names(), title, f"/v1/reports/{report['id']}/coverage.png") \
        if digest else f"# {title}\n"
    return page + "\n## Tagged outline\n\n" + tagged_markdown(report["paragraphs"])


def _digest(report: dict) -> Digest | None:
    return Digest.from_dict(report["digest"]) if report["digest"] else None


def _chart(digest: Digest) -> bytes:
    """PNG bytes of the coverage bar chart."""
    from fazhi.render import coverage_chart

    return coverage_chart(digest, load_taxonomy().names())


@router.get("/v1/reports/{report_id}/coverage.png", tags=["reports"], dependencies=[Depends(read_access)],
            responses={**_ERRORS, 200: {"content": {"image/png": {}}}}, response_class=Response,
            summary="Coverage bar chart of a stored report")
async def report_chart(store: Store, batcher: ModelBatcher, report_id: str) -> Response:
    digest = _digest(await _stored(store, report_id))
    if digest is None:
        raise HTTPException(404, f"report {report_id!r} has no digest")
    # on the model thread, not the threadpool: pyplot is not thread-safe, and that one thread is its only user
    png = await batcher.run(_chart, digest)
    return Response(png, media_type="image/png")


@router.delete("/v1/reports/{report_id}", tags=["reports"], status_code=204, dependencies=[Depends(write_access)],
               responses=_ERRORS, response_class=Response, summary="Delete a report and its paragraphs")
async def delete_report(store: Store, report_id: str) -> Response:
    if not await run_in_threadpool(store.delete, report_id):
        raise _no_report(report_id)
    return Response(status_code=204)


# --- paragraphs -------------------------------------------------------------------------------------------------

@router.get("/v1/paragraphs", tags=["paragraphs"], response_model=s.ParagraphPage, dependencies=[Depends(read_access)],
            responses=_ERRORS, summary="Filter and full-text search stored paragraphs")
async def paragraphs(store: Store, batcher: ModelBatcher,
                     category: str | None = Query(None, description="A category id, e.g. enforcement"),
                     shortcoming: bool | None = None,
                     region: str | None = Query(None, max_length=s.REGION_CHARS),
                     year: int | None = Query(None, ge=s.YEAR_MIN, le=s.YEAR_MAX),
                     q: str | None = Query(None, max_length=200, pattern=r"^[^\x00]*$",
                                       description="Text the paragraph contains (no NUL characters)"),
                     kind: Literal["body", "heading", "any"] = "body",
                     report_id: str | None = Query(None, max_length=REPORT_ID_CHARS),
                     limit: int = Query(50, ge=1, le=500),
                     cursor: str | None = Query(None, description="next_cursor of the previous page")) -> s.ParagraphPage:
    labels = batcher.clf.labels
    if category is not None and category not in labels:
        raise HTTPException(422, f"category: {category!r} is not one of {', '.join(labels)}")
    query = ParagraphQuery(category=category, shortcoming=shortcoming, region=region, year=year, q=q or None,
                           kind=None if kind == "any" else kind, report_id=report_id)
    items, next_cursor = await run_in_threadpool(store.paragraphs, query, limit, cursor)
    return s.ParagraphPage(items=items, next_cursor=next_cursor)



# --- comparison -------------------------------------------------------------------------------------------------

def _side(report: dict) -> Side:
    if not report["digest"]:
        raise HTTPException(422, f"report {report['id']!r} has no digest to compare")
    return Side.of(report, Digest.from_dict(report["digest"]))


def _embedder(settings: Settings, state) -> Embedder:
    """On the model thread: the sentence encoder is loaded there once, on first use, like the classifier."""
    if getattr(state, "embedder", None) is None:
        if not (settings.embedder / "config.json").is_file():  # the server's set-up, not the request, is wrong
            raise HTTPException(503, f"no sentence encoder at {settings.embedder} (FAZHI_EMBEDDER); run `make setup`")
        state.embedder = Embedder(settings.embedder)
    return state.embedder


@router.get("/v1/compare", tags=["reports"], response_model=Comparison, dependencies=[Depends(read_access)],
            responses=_ERRORS, summary="Year over year: what changed between two stored reports")
async def compare_reports(request: Request, store: Store, batcher: ModelBatcher, settings: AppSettings,
                          old: str = Query(..., max_length=64, description="id of the earlier report"),
                          new: str = Query(..., max_length=64, description="id of the later report")) -> Comparison:
    sides = [_side(await _stored(store, report_id)) for report_id in (old, new)]
    embedder = await batcher.run(_embedder, settings, request.app.state)

    def embed(texts):  # only the encoder runs on the model thread; matching figures is the thread pool's work
        return batcher.executor.submit(embedder.encode, texts).result()

    return await run_in_threadpool(compare, *sides, embed, load_taxonomy().names())


# --- corrections ------------------------------------------------------------------------------------------------

@router.put("/v1/paragraphs/{paragraph_key}/label", tags=["paragraphs"], response_model=s.CorrectedParagraph,
            dependencies=[Depends(write_access)], responses=_ERRORS,
            summary="Correct a paragraph's category or shortcoming flag (the model's label is kept)")
async def correct_label(store: Store, batcher: ModelBatcher, key: ApiKey, body: s.LabelIn,
                        paragraph_key: str = Path(..., max_length=100, description="REPORT_ID:PARAGRAPH_ID")):
    report_id, _, paragraph_id = paragraph_key.partition(":")
    if body.category is None and body.shortcoming is None:
        raise HTTPException(422, "body: give a category, a shortcoming flag or both")
    if body.category is not None and body.category not in batcher.clf.labels:
        raise HTTPException(422, f"category: {body.category[:40]!r} is not one of {', '.join(batcher.clf.labels)}")
    labels = body.model_dump(exclude_none=True)
    fixed = await run_in_threadpool(store.correct, report_id, paragraph_id, labels, reviewer_of(key))
    if fixed is None:
        raise HTTPException(404, "paragraph not found (the key is REPORT_ID:PARAGRAPH_ID)")
    return fixed


@router.get("/v1/corrections", tags=["paragraphs"], response_model=s.CorrectionList,
            dependencies=[Depends(read_access)], responses=_ERRORS,
            summary="Reviewers' corrections, oldest first (count: all of them, items: the first `limit`)")
async def list_corrections(store: Store, report_id: str | None = Query(None, max_length=64),
                           limit: int = Query(500, ge=1, le=5000)) -> s.CorrectionList:
    items = await run_in_threadpool(store.corrections, report_id)
    return s.CorrectionList(items=items[:limit], count=len(items))
