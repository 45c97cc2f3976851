"""API keys: from ``FAZHI_API_KEYS`` (comma-separated) and/or a key file of SHA-256 hashes.

Keys are compared by hash in constant time and never logged. A key file holds one
``sha256:<hex>`` line per key (``fazhi api-key new --key-file F`` appends one), so the
keys themselves are not stored at rest.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from fazhi.errors import FazhiError

HEADER = "X-API-Key"


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def load_key_hashes(key_file: str | Path | None = None, keys: str = "") -> set[str]:
    """Hashes of the accepted keys: those in ``keys`` (comma-separated, as ``FAZHI_API_KEYS`` holds
    them: pass ``Settings.api_keys.get_secret_value()``) and those in ``key_file``."""
    hashes = {hash_key(k.strip()) for k in keys.split(",") if k.strip()}
    if key_file:
        path = Path(key_file)
        if not path.is_file():
            raise FazhiError(str(path), "API key file not found")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            digest = line.removeprefix("sha256:")
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise FazhiError(f"{path}:{n}", "expected sha256:<64 hex digits>")
            hashes.add("sha256:" + digest)
    return hashes


def new_key(key_file: str | Path) -> str:
    """Make a random key, append its hash to ``key_file`` and return the key (shown once)."""
    key = secrets.token_urlsafe(32)
    path = Path(key_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(hash_key(key) + "\n")
    path.chmod(0o600)
    return key


def check_key(key: str | None, hashes: set[str]) -> int | None:
    """None when ``key`` is accepted, else the HTTP status: 401 without a key, 403 with a wrong one."""
    if not key:
        return 401
    given = hash_key(key)
    # compare against every hash so the time taken does not tell which one matched
    ok = False
    for h in hashes:
        ok |= hmac.compare_digest(given, h)
    return None if ok else 403
