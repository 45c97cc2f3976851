"""The real server (`fazhi serve` on a loopback port), and a schema-driven fuzz run of the API."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from conftest import REPORTS
from fazhi.serving.app import create_app
from fazhi.serving.loadtest import running_server
from fazhi.settings import Settings

REPORT_001 = next(p for p in REPORTS if p.name.startswith("001_"))


def test_real_server_end_to_end(tmp_path):
    with running_server("rules", work=tmp_path, api_keys="server-key") as server:
        with REPORT_001.open("rb") as f:
            r = httpx.post(f"{server.base}/v1/reports", files={"file": (REPORT_001.name, f.read())},
                           headers={"X-API-Key": "server-key"}, timeout=60)
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        hits = httpx.get(f"{server.base}/v1/paragraphs",
                         params={"category": "enforcement", "shortcoming": "true"}).json()
        assert hits["items"] and all(p["report_id"] == rid and p["category"] == "enforcement" and p["shortcoming"]
                                     for p in hits["items"])
    # SIGINT stops it cleanly, and the access log never holds the key
    text = server.log.read_text()
    assert server.process.returncode == 0, text
    assert "server-key" not in text and '"path": "/v1/reports"' in text


_DB = Path(tempfile.mkdtemp(prefix="fazhi-fuzz-")) / "fuzz.db"
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(Settings(db=_DB, model="rules", api_keys="fuzz-key")))


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_fuzz_finds_no_server_error(case):
    """Generated requests (valid and not) to every operation never get a 5xx, and answers match the schema."""
    case.call_and_validate(headers={"X-API-Key": "fuzz-key"}, checks=[not_a_server_error, response_schema_conformance])
