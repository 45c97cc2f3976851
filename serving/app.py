"""The FastAPI application: lifespan (model and store), JSON errors and access logs.

Its configuration is :class:`fazhi.settings.Settings` (``FAZHI_*`` variables, CLI flags on top).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from fazhi.errors import FazhiError, LimitError
from fazhi.serving.auth import load_key_hashes
from fazhi.serving.limits import REQUEST_ID, BodyLimit
from fazhi.serving.postgres import redact
from fazhi.serving.store import StoreBusy
from fazhi.settings import Settings
from fazhi.settings import settings as load_settings

log = logging.getLogger("fazhi.access")

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_input", 503: "not_ready"}


# batcher tuning, kept out of Settings: no FAZHI_ variable sets it
MAX_BATCH = 64  # paragraphs per model call
MAX_WAIT_MS = 5.0  # how long the first request of a batch waits for company, milliseconds
RETRY_AFTER_S = 5  # what a 503 for a locked database tells the client to wait, seconds


def error_response(status: int, message: str, code: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code or _CODES.get(status, "error"), "message": message}},
                        status_code=status, headers=headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application; the model and the store are opened when it starts (lifespan)."""
    from fazhi.models.registry import load_classifier
    from fazhi.serving.batching import Batcher
    from fazhi.serving import web
    from fazhi.serving.routes import router
    from fazhi.serving.database import open_store

    settings = settings or load_settings()
    # a bad key file fails here, before serving
    key_hashes = load_key_hashes(settings.api_key_file, settings.api_keys.get_secret_value())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        clf = load_classifier(settings.model)
        clf.predict(["依法行政，建设法治政府。"])  # warm-up: first-call costs before the first request
        app.state.store = open_store(settings.db, settings.db_busy_timeout)
        app.state.batcher = Batcher(clf, MAX_BATCH, MAX_WAIT_MS, settings.batching)
        await app.state.batcher.start()
        log.info(json.dumps({"event": "ready", "model": clf.name, "db": redact(str(settings.db)),
                             "batching": settings.batching, "api_keys": len(key_hashes)}))
        yield
        await app.state.batcher.stop()
        app.state.store.close()

    app = FastAPI(title="fazhi", version="1.0",
                  description="Tag, digest, store and search Chinese rule-of-law government reports.",
                  lifespan=lifespan, responses={422: {"model": None}})
    app.state.settings = settings
    app.state.key_hashes = key_hashes
    app.include_router(router)
    app.include_router(web.router)
    app.mount("/static", web.static, name="static")
    if not settings.protect_reads:
        _keys_optional_for_reads(app, router)

    app.add_middleware(BodyLimit, limit=settings.max_bytes)

    @app.middleware("http")
    async def access_log(request: Request, call_next):
        given = request.headers.get("X-Request-ID", "")
        request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        request.state.request_id = request_id
        start = time.perf_counter()
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_bytes:
            response = error_response(413, f"request body is {length} bytes, over the limit FAZHI_MAX_BYTES="
                                           f"{settings.max_bytes}")
        else:
            try:
                response = await call_next(request)
            except Exception:  # noqa: BLE001 - logged here, once, with its request id; the server goes on
                logging.getLogger("fazhi").exception("unhandled error in request %s", request_id)
                response = error_response(500, f"internal error (request id {request_id})", code="internal")
        response.headers["X-Request-ID"] = request_id
        # never the headers: they carry API keys
        log.info(json.dumps({"event": "access", "request_id": request_id, "method": request.method,
                             "path": request.url.path, "status": response.status_code,
                             "ms": round(1000 * (time.perf_counter() - start), 1)}))
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail, ensure_ascii=False)
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every method of the path, not only those of the first route matched
            methods = {m for r in router.routes if isinstance(r, APIRoute)
                       and r.matches(request.scope)[0] != Match.NONE for m in r.methods}
            if methods:  # a path of the pages or static files keeps the header Starlette gave it
                headers["Allow"] = ", ".join(sorted(methods))
        return error_response(exc.status_code, detail, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        return error_response(422, f"{where}: {first.get('msg')}{more}")

    @app.exception_handler(LimitError)
    async def too_large(request: Request, exc: LimitError):
        return error_response(413, str(exc))

    @app.exception_handler(StoreBusy)
    async def busy(request: Request, exc: StoreBusy):
        return error_response(503, str(exc), code="busy", headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(FazhiError)
    async def bad_input(request: Request, exc: FazhiError):
        return error_response(422, str(exc))

    return app


def _keys_optional_for_reads(app: FastAPI, router: APIRouter) -> None:
    """Mark the key as optional on read operations in the OpenAPI document (``security: [{}, key]``).

    FastAPI lists a ``Security`` dependency as required; read endpoints take a key only when the
    server protects reads, so without that the document would claim keys that are not needed.
    """
    from fazhi.serving.deps import read_access

    # the router's own routes: recent FastAPI keeps included routers in app.routes as opaque wrappers
    reads = {(route.path, method.lower()) for route in router.routes if isinstance(route, APIRoute)
             for method in route.methods if any(d.dependency is read_access for d in route.dependencies)}

    build = app.openapi  # FastAPI's own, which caches its result in app.openapi_schema

    def openapi() -> dict:
        if app.openapi_schema is None:
            for path, operations in build()["paths"].items():
                for method, operation in operations.items():
                    if (path, method) in reads and operation.get("security"):
                        operation["security"] = [{}, *operation["security"]]
        return app.openapi_schema

    app.openapi = openapi
