"""Typed dependencies of the endpoints: settings, store, batcher, and the API key scheme.

The lifespan puts the store and the batcher on ``app.state``; routes receive them through
these aliases (``store: Store``) instead of reaching into the request themselves.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from fazhi.serving.auth import HEADER, check_key
from fazhi.serving.batching import Batcher
from fazhi.serving.store import ReportStore
from fazhi.settings import Settings

# auto_error=False: a missing key is answered by _require_key, in this API's own 401 message
api_key_header = APIKeyHeader(name=HEADER, auto_error=False,
                              description="A key from FAZHI_API_KEYS or the key file (`fazhi api-key new`)")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def _loaded(request: Request, name: str):
    # absent before the lifespan has run (or after it failed): not ready rather than a 500
    value = getattr(request.app.state, name, None)
    if value is None:
        raise HTTPException(503, "model or database not loaded yet")
    return value


def get_store(request: Request) -> ReportStore:
    return _loaded(request, "store")


def get_batcher(request: Request) -> Batcher:
    """The batcher, which also holds the loaded classifier (``batcher.clf``)."""
    return _loaded(request, "batcher")


def get_key_hashes(request: Request) -> set[str]:
    return request.app.state.key_hashes


AppSettings = Annotated[Settings, Depends(get_settings)]
Store = Annotated[ReportStore, Depends(get_store)]
ModelBatcher = Annotated[Batcher, Depends(get_batcher)]
KeyHashes = Annotated[set[str], Depends(get_key_hashes)]
ApiKey = Annotated[str | None, Security(api_key_header)]


def _require_key(key: str | None, hashes: set[str]) -> None:
    status = check_key(key, hashes)
    if status:
        raise HTTPException(status, f"{HEADER} header missing" if status == 401 else f"{HEADER} not accepted")


def reviewer_of(key: str | None) -> str:
    """How a correction names its reviewer: the first hex digits of their key's hash, never the key."""
    from fazhi.serving.auth import hash_key

    return "key:" + hash_key(key or "").removeprefix("sha256:")[:8]


def write_access(key: ApiKey, hashes: KeyHashes) -> None:
    """Write endpoints always need a key."""
    _require_key(key, hashes)


def read_access(key: ApiKey, hashes: KeyHashes, settings: AppSettings) -> None:
    """Read endpoints need one only when the server protects reads."""
    if settings.protect_reads:
        _require_key(key, hashes)
