"""The web pages for reviewers and supervisors, served by the API's own app.

Pages are rendered on the server (Jinja2) from the same store the API reads; the few writes
(upload, delete, correct a label) are made by ``static/app.js`` through the JSON API with the
key the user keeps in the browser, so the pages hold no write path of their own. Nothing is
loaded from outside the server.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from fazhi.corpora.reader import SUPPORTED
from fazhi.corpora.taxonomy import load_taxonomy
from fazhi.serving import schemas as s
from fazhi.serving.deps import AppSettings, ModelBatcher, Store
from fazhi.serving.store import ParagraphQuery, ReportQuery

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
static = StaticFiles(directory=HERE / "static")
def pages_open(settings: AppSettings) -> None:
    """The pages are read endpoints a browser cannot send a key header to: while the server protects
    reads they are off (403), and the JSON API with its key is the way in."""
    if settings.protect_reads:
        raise HTTPException(403, "the web pages are off while reads are protected (--protect-reads); use the API")


router = APIRouter(include_in_schema=False, dependencies=[Depends(pages_open)])


def _context(request: Request, page: str, batcher, **values) -> dict:
    return {"request": request, "page": page, "labels": batcher.clf.labels, "names": load_taxonomy().names(),
            **values}


async def _page(name: str, context: dict) -> HTMLResponse:
    """A rendered template; rendering runs in the thread pool, as a long report's page takes a while."""
    html = await run_in_threadpool(templates.get_template(name).render, context)
    return HTMLResponse(html)


def _more(request: Request, cursor: str) -> str:
    """The query string of the next page: the same filters, the next cursor."""
    return urlencode({**{k: v for k, v in request.query_params.items() if k != "cursor"}, "cursor": cursor})


@router.get("/", response_class=HTMLResponse)
async def reports_page(request: Request, store: Store, batcher: ModelBatcher, region: str | None = None,
                       year: str | None = None, q: str | None = None, cursor: str | None = None):
    query = ReportQuery(region=region or None, year=_year(year), q=q or None)
    items, next_cursor = await run_in_threadpool(store.list, 50, cursor, query)
    return await _page("reports.html", _context(
        request, "reports", batcher, reports=items, query=query, next_cursor=next_cursor,
        more=_more(request, next_cursor) if next_cursor else "", accept=",".join(SUPPORTED)))


@router.get("/reports/{report_id}", response_class=HTMLResponse)
async def report_page(request: Request, store: Store, batcher: ModelBatcher, report_id: str):
    report = await run_in_threadpool(store.get, report_id)
    if report is None:
        raise HTTPException(404, "report not found")
    corrected = sum(p["correction"] is not None for p in report["paragraphs"])
    for p in report["paragraphs"]:  # what the page shows and its form starts from: the reviewer's labels, else the model's
        fix = p["correction"] or {}
        p["shown_category"] = fix.get("category", p["category"])
        p["shown_shortcoming"] = fix.get("shortcoming", p["shortcoming"])
    return await _page("report.html", _context(
        request, "reports", batcher, report=report, digest=report["digest"], corrected=corrected))


@router.get("/search", response_class=HTMLResponse)
async def search_page(request: Request, store: Store, batcher: ModelBatcher, category: str | None = None,
                      shortcoming: str | None = None, region: str | None = None, year: str | None = None,
                      q: str | None = Query(None, max_length=200), cursor: str | None = None):
    flag = {"true": True, "false": False}.get(shortcoming or "")
    query = ParagraphQuery(category=category if category in batcher.clf.labels else None, shortcoming=flag,
                           region=region or None, year=_year(year), q=(q or "").replace("\x00", "") or None)
    items, next_cursor = await run_in_threadpool(store.paragraphs, query, 50, cursor)
    return await _page("search.html", _context(
        request, "search", batcher, items=items, query=query, next_cursor=next_cursor,
        more=_more(request, next_cursor) if next_cursor else ""))


@router.get("/overview", response_class=HTMLResponse)
async def overview_page(request: Request, store: Store, batcher: ModelBatcher):
    rows = await run_in_threadpool(store.overview)
    labels, default = batcher.clf.labels, load_taxonomy().default
    for r in rows:
        r["missing"] = [c for c in labels if c != default and not r["paragraphs"].get(c)]
    shortcomings = {c: sum(r["shortcomings"].get(c, 0) for r in rows) for c in labels}
    years = any(len({r["year"] for r in rows if r["region"] == region}) > 1 for region in {r["region"] for r in rows})
    return await _page("overview.html", _context(
        request, "overview", batcher, rows=rows, shortcomings=shortcomings, years=years))


@router.get("/ui/overview/{chart}.png")
async def overview_chart(store: Store, batcher: ModelBatcher, chart: str) -> Response:
    from fazhi.render import coverage_heatmap, year_lines

    draw = {"heatmap": coverage_heatmap, "years": year_lines}.get(chart)
    if draw is None:
        raise HTTPException(404, "no such chart")
    rows = await run_in_threadpool(store.overview)
    # on the model thread: pyplot is not thread-safe, and that thread is its only user
    png = await batcher.run(draw, rows, batcher.clf.labels, load_taxonomy().names())
    return Response(png, media_type="image/png")


def _year(value: str | None) -> int | None:
    """A year filter from a form field (empty or out of range: no filter)."""
    try:
        year = int(value) if value else None
    except ValueError:
        return None
    return year if year is not None and s.YEAR_MIN <= year <= s.YEAR_MAX else None
