"""The endpoints: classification, reports, paragraph search, health and the model card."""

from __future__ import annotations

from pathlib import PurePath
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from pydantic import ValidationError

from fazhi.corpora import parse_text
from fazhi.corpora.reader import SUPPORTED, read_bytes
from fazhi.corpora.taxonomy import load_taxonomy
from fazhi.analysis import Analyzer
from fazhi.models.digest import Digest
from fazhi.serving import schemas as s
from fazhi.serving.auth import HEADER, check_key
from fazhi.serving.store import ParagraphQuery, ReportRecord

router = APIRouter()

_ERRORS = {code: {"model": s.ErrorOut} for code in (401, 403, 404, 413, 415, 422)}


def _require_key(request: Request) -> None:
    status = check_key(request.headers.get(HEADER), request.app.state.key_hashes)
    if status:
        raise HTTPException(status, f"{HEADER} header missing" if status == 401 else f"{HEADER} not accepted")


def write_access(request: Request) -> None:
    """Write endpoints always need a key."""
    _require_key(request)


def read_access(request: Request) -> None:
    """Read endpoints need one only when the server protects reads."""
    if request.app.state.settings.protect_reads:
        _require_key(request)


# --- health ---------------------------------------------------------------------------------------------------

@router.get("/healthz", tags=["health"], summary="The process is up")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], summary="Model loaded and database writable",
            responses={503: {"model": s.ErrorOut}})
async def readyz(request: Request):
    batcher = getattr(request.app.state, "batcher", None)
    store = getattr(request.app.state, "store", None)
    if batcher is None or store is None:
        raise HTTPException(503, "model or database not loaded yet")
    if not store.writable():
        raise HTTPException(503, "database is not writable")
    return {"status": "ready", "model": batcher.clf.name}


@router.get("/v1/model", tags=["model"], response_model=s.ModelInfo, dependencies=[Depends(read_access)],
            summary="The model card: name, labels, metrics")
async def model_info(request: Request) -> s.ModelInfo:
    from fazhi.models.registry import model_card

    batcher = request.app.state.batcher
    metrics, card = model_card(request.app.state.settings.model)
    return s.ModelInfo(name=batcher.clf.name, labels=list(batcher.clf.labels), metrics=metrics, card=card,
                       batching=batcher.enabled, model_calls=batcher.batches)


# --- classification ---------------------------------------------------------------------------------------------

@router.post("/v1/classify", tags=["classify"], response_model=s.ClassifyResponse, responses=_ERRORS,
             dependencies=[Depends(read_access)], summary="Tag paragraphs sent alone or with their heading path")
async def classify(body: s.ClassifyRequest, request: Request) -> s.ClassifyResponse:
    settings = request.app.state.settings
    if len(body.paragraphs) > settings.max_paragraphs:
        raise HTTPException(413, f"{len(body.paragraphs)} paragraphs, over the limit max_paragraphs="
                                 f"{settings.max_paragraphs}")
    items = [p if isinstance(p, s.ParagraphIn) else s.ParagraphIn(text=p) for p in body.paragraphs]
    for i, p in enumerate(items):
        if len(p.text) > settings.max_paragraph_chars:
            raise HTTPException(422, f"paragraphs.{i}: {len(p.text)} characters, over the limit "
                                     f"max_paragraph_chars={settings.max_paragraph_chars}")
    batcher = request.app.state.batcher
    preds = await batcher.predict([p.text for p in items], [p.heading_path for p in items])
    return s.ClassifyResponse(results=[s.ClassifyResult(text=p.text, **r.to_dict()) for p, r in zip(items, preds)],
                              model=batcher.clf.name)


# --- reports ----------------------------------------------------------------------------------------------------

_REPORT_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": s.ReportIn.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": f"One of {', '.join(SUPPORTED)}"},
        "title": {"type": "string"}, "region": {"type": "string"}, "year": {"type": "integer"}}}}}}}


async def _report_input(request: Request) -> tuple[str, s.ReportIn]:
    """The uploaded or posted report as text plus its given title/region/year; the source name for errors."""
    limit = request.app.state.settings.max_body_bytes
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
        raise HTTPException(413, f"{name}: over the limit max_body_bytes={limit}")
    text = read_bytes(data, PurePath(name).suffix, name)
    fields = {k: v for k in ("title", "region", "year") if isinstance(v := form.get(k), str) and v}
    try:
        return name, s.ReportIn(text=text, **fields)
    except ValidationError as err:
        raise RequestValidationError(err.errors()) from None


def _tag(report: s.ReportIn, source: str, analyzer: Analyzer) -> ReportRecord:
    """Parse, tag and digest one report (runs on the model thread)."""
    analysis = analyzer.analyze(parse_text(report.text), name=source)
    doc = analysis.document
    return ReportRecord(meta=doc.meta, paragraphs=analysis.paragraphs(),
                        model=analyzer.classifier.name, title=report.title or doc.meta.get("title"),
                        region=report.region or doc.meta.get("region"), year=report.year or doc.meta.get("year"),
                        source=source if source != "request body" else None, digest=analysis.digest.to_dict())


@router.post("/v1/reports", tags=["reports"], status_code=201, response_model=s.ReportOut,
             responses=_ERRORS, openapi_extra=_REPORT_BODY, dependencies=[Depends(write_access)],
             summary="Parse, tag, digest and store a report (file upload or JSON text)")
async def post_report(request: Request) -> s.ReportOut:
    source, report = await _report_input(request)
    batcher = request.app.state.batcher
    record = await batcher.run(_tag, report, source, Analyzer(batcher.clf))
    store = request.app.state.store
    return s.ReportOut.model_validate(store.get(store.add(record)))


@router.get("/v1/reports", tags=["reports"], response_model=s.ReportList, dependencies=[Depends(read_access)],
            responses=_ERRORS, summary="Stored reports, oldest first")
async def list_reports(request: Request, limit: int = Query(50, ge=1, le=500),
                       cursor: str | None = None) -> s.ReportList:
    items, next_cursor = request.app.state.store.list(limit, cursor)
    return s.ReportList(items=items, next_cursor=next_cursor)


def _stored(request: Request, report_id: str) -> dict:
    report = request.app.state.store.get(report_id)
    if report is None:
        raise HTTPException(404, f"report {report_id!r} not found")
    return report


@router.get("/v1/reports/{report_id}", tags=["reports"], response_model=s.ReportOut,
            dependencies=[Depends(read_access)], responses={**_ERRORS, 200: {"content": {"text/markdown": {}}}},
            summary="A tagged report (format=md for a readable page)")
async def get_report(request: Request, report_id: str, format: Literal["json", "md"] = "json"):
    report = _stored(request, report_id)
    if format == "json":
        return report
    from fazhi.render import digest_markdown, tagged_markdown

    title = report["title"] or report_id
    digest = _digest(report)
    page = digest_markdown(digest, load_taxonomy().names(), title, f"/v1/reports/{report_id}/coverage.png") \
        if digest else f"# {title}\n"
    return PlainTextResponse(page + "\n## Tagged outline\n\n" + tagged_markdown(report["paragraphs"]),
                             media_type="text/markdown; charset=utf-8")


def _digest(report: dict) -> Digest | None:
    return Digest.from_dict(report["digest"]) if report["digest"] else None


@router.get("/v1/reports/{report_id}/coverage.png", tags=["reports"], dependencies=[Depends(read_access)],
            responses={**_ERRORS, 200: {"content": {"image/png": {}}}}, response_class=Response,
            summary="Coverage bar chart of a stored report")
async def report_chart(request: Request, report_id: str) -> Response:
    from fazhi.render import coverage_chart

    digest = _digest(_stored(request, report_id))
    if digest is None:
        raise HTTPException(404, f"report {report_id!r} has no digest")
    png = await request.app.state.batcher.run(coverage_chart, digest, load_taxonomy().names())
    return Response(png, media_type="image/png")


@router.delete("/v1/reports/{report_id}", tags=["reports"], status_code=204, dependencies=[Depends(write_access)],
               responses=_ERRORS, response_class=Response, summary="Delete a report and its paragraphs")
async def delete_report(request: Request, report_id: str) -> Response:
    if not request.app.state.store.delete(report_id):
        raise HTTPException(404, f"report {report_id!r} not found")
    return Response(status_code=204)


# --- paragraphs -------------------------------------------------------------------------------------------------

@router.get("/v1/paragraphs", tags=["paragraphs"], response_model=s.ParagraphPage, dependencies=[Depends(read_access)],
            responses=_ERRORS, summary="Filter and full-text search stored paragraphs")
async def paragraphs(request: Request,
                     category: str | None = Query(None, description="A category id, e.g. enforcement"),
                     shortcoming: bool | None = None,
                     region: str | None = None,
                     year: int | None = Query(None, ge=s.YEAR_MIN, le=s.YEAR_MAX),
                     q: str | None = Query(None, max_length=200, pattern=r"^[^\x00]*$",
                                       description="Text the paragraph contains (no NUL characters)"),
                     kind: Literal["body", "heading", "any"] = "body",
                     report_id: str | None = None,
                     limit: int = Query(50, ge=1, le=500),
                     cursor: str | None = Query(None, description="next_cursor of the previous page")) -> s.ParagraphPage:
    labels = request.app.state.batcher.clf.labels
    if category is not None and category not in labels:
        raise HTTPException(422, f"category: {category!r} is not one of {', '.join(labels)}")
    query = ParagraphQuery(category=category, shortcoming=shortcoming, region=region, year=year, q=q or None,
                           kind=None if kind == "any" else kind, report_id=report_id)
    items, next_cursor = request.app.state.store.paragraphs(query, limit, cursor)
    return s.ParagraphPage(items=items, next_cursor=next_cursor)

