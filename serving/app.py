"""The FastAPI application: settings, lifespan (model and store), JSON errors and access logs."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fazhi.errors import FazhiError
from fazhi.serving.auth import load_key_hashes

log = logging.getLogger("fazhi.access")

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_input", 503: "not_ready"}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise FazhiError(name, f"expected an integer, got {value!r}") from None


@dataclass
class Settings:
    """Server configuration; :meth:`from_env` reads ``FAZHI_*`` variables, CLI flags override them."""

    db: Path = Path("fazhi.db")
    model: str | None = None  # rules, tfidf or a directory; None: the release model
    key_file: Path | None = None
    protect_reads: bool = False  # require a key on GET endpoints too
    max_paragraphs: int = 256  # per /v1/classify request
    max_paragraph_chars: int = 5000
    max_body_bytes: int = 20 * 1024 * 1024
    batching: bool = True
    max_batch: int = 64  # paragraphs per model call
    max_wait_ms: float = 5.0  # how long the first request waits for company
    api_keys_env: str | None = field(default=None, repr=False)  # None: read $FAZHI_API_KEYS

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        env = os.environ
        s = cls(db=Path(env.get("FAZHI_DB", "fazhi.db")), model=env.get("FAZHI_MODEL"),
                key_file=Path(env["FAZHI_API_KEY_FILE"]) if env.get("FAZHI_API_KEY_FILE") else None,
                protect_reads=env.get("FAZHI_PROTECT_READS", "") in ("1", "true", "yes"),
                max_paragraphs=_env_int("FAZHI_MAX_PARAGRAPHS", 256),
                max_paragraph_chars=_env_int("FAZHI_MAX_PARAGRAPH_CHARS", 5000),
                max_body_bytes=_env_int("FAZHI_MAX_BYTES", 20 * 1024 * 1024),
                batching=env.get("FAZHI_BATCHING", "1") not in ("0", "false", "no"))
        for key, value in overrides.items():
            if value is not None:
                setattr(s, key, value)
        return s


def error_response(status: int, message: str, code: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code or _CODES.get(status, "error"), "message": message}},
                        status_code=status, headers=headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application; the model and the store are opened when it starts (lifespan)."""
    from fazhi.models.registry import load_classifier
    from fazhi.serving.batching import Batcher
    from fazhi.serving.routes import router
    from fazhi.serving.store import open_store

    settings = settings or Settings.from_env()
    key_hashes = load_key_hashes(settings.key_file, settings.api_keys_env)  # bad key file: fail before serving

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        clf = load_classifier(settings.model)
        clf.predict(["依法行政，建设法治政府。"])  # warm-up: first-call costs before the first request
        app.state.store = open_store(settings.db)
        app.state.batcher = Batcher(clf, settings.max_batch, settings.max_wait_ms, settings.batching)
        await app.state.batcher.start()
        log.info(json.dumps({"event": "ready", "model": clf.name, "db": str(settings.db),
                             "batching": settings.batching, "api_keys": len(key_hashes)}))
        yield
        await app.state.batcher.stop()

    app = FastAPI(title="fazhi", version="1.0",
                  description="Tag, digest, store and search Chinese rule-of-law government reports.",
                  lifespan=lifespan, responses={422: {"model": None}})
    app.state.settings = settings
    app.state.key_hashes = key_hashes
    app.include_router(router)

    @app.middleware("http")
    async def access_log(request: Request, call_next):
        request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex[:16]
        request.state.request_id = request_id
        start = time.perf_counter()
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_body_bytes:
            response = error_response(413, f"request body is {length} bytes, over the limit max_body_bytes="
                                           f"{settings.max_body_bytes}")
        else:
            response = await call_next(request)
        response.headers["X-Request-ID"] = request_id
        # never the headers: they carry API keys
        log.info(json.dumps({"event": "access", "request_id": request_id, "method": request.method,
                             "path": request.url.path, "status": response.status_code,
                             "ms": round(1000 * (time.perf_counter() - start), 1)}))
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail, ensure_ascii=False)
        return error_response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        return error_response(422, f"{where}: {first.get('msg')}{more}")

    @app.exception_handler(FazhiError)
    async def bad_input(request: Request, exc: FazhiError):
        return error_response(422, str(exc))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        logging.getLogger("fazhi").exception("unhandled error in request %s", getattr(request.state, "request_id", "?"))
        return error_response(500, f"internal error (request id {getattr(request.state, 'request_id', '?')})",
                              code="internal")

    return app
