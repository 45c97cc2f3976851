"""The real server (`fazhi serve` on a loopback port), and a schema-driven fuzz run of the API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from conftest import REPORTS, ROOT
from serving.app import Settings, create_app
from serving.loadtest import free_port

REPORT_001 = next(p for p in REPORTS if p.name.startswith("001_"))


def test_real_server_end_to_end(tmp_path):
    port = free_port()
    env = {**os.environ, "FAZHI_API_KEYS": "server-key", "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "fazhi.cli", "serve", "--port", str(port), "--model", "rules",
                               "--db", str(tmp_path / "server.db")], cwd=ROOT, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "server not ready in 60 s"
            time.sleep(0.2)
        with REPORT_001.open("rb") as f:
            r = httpx.post(f"{base}/v1/reports", files={"file": (REPORT_001.name, f.read())},
                           headers={"X-API-Key": "server-key"}, timeout=60)
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        hits = httpx.get(f"{base}/v1/paragraphs", params={"category": "enforcement", "shortcoming": "true"}).json()
        assert hits["items"] and all(p["report_id"] == rid and p["category"] == "enforcement" and p["shortcoming"]
                                     for p in hits["items"])
    finally:
        server.send_signal(signal.SIGINT)
        code = server.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / "server.log").read_text()
    text = (tmp_path / "server.log").read_text()
    assert "server-key" not in text and '"path": "/v1/reports"' in text


_DB = Path(tempfile.mkdtemp(prefix="fazhi-fuzz-")) / "fuzz.db"
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(Settings(db=_DB, model="rules", api_keys_env="fuzz-key")))


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_fuzz_finds_no_server_error(case):
    """Generated requests (valid and not) to every operation never get a 5xx, and answers match the schema."""
    case.call_and_validate(headers={"X-API-Key": "fuzz-key"}, checks=[not_a_server_error, response_schema_conformance])
