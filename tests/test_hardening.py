"""A real server under hostile requests: chunked bodies over the limit, oversized ids, 405s and 500s."""

from __future__ import annotations

import os
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from fazhi.serving.app import create_app
from fazhi.serving.loadtest import running_server
from fazhi.settings import Settings

pytestmark = pytest.mark.slow
KEY = {"X-API-Key": "k"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    os.environ["FAZHI_MAX_BYTES"] = str(2 * 2**20)  # the subprocess reads it; a 2 MB limit keeps the test small
    try:
        with running_server("rules", work=tmp_path_factory.mktemp("srv"), api_keys="k") as s:
            yield s
    finally:
        del os.environ["FAZHI_MAX_BYTES"]


def chunks(total: int, size: int = 64 * 1024):
    """A body sent chunked (no Content-Length): ``total`` bytes of a JSON string, ``size`` at a time."""
    yield b'{"text": "'
    for _ in range(total // size):
        yield "法".encode() * (size // 3)
    yield b'"}'


def test_a_chunked_body_over_the_limit_is_413_and_reading_stops(server):
    sent = 0

    def counting():
        nonlocal sent
        for c in chunks(50 * 2**20):  # 50 MB offered against a 2 MB limit
            sent += len(c)
            yield c

    start = time.perf_counter()
    try:
        r = httpx.post(f"{server.base}/v1/reports", content=counting(), headers={**KEY, "content-type": "application/json"},
                       timeout=60)
        assert r.status_code == 413 and "FAZHI_MAX_BYTES=2097152" in r.json()["error"]["message"]
    except (httpx.WriteError, httpx.RemoteProtocolError):
        pass  # the server answered and closed before the client finished sending: also a refusal
    assert sent < 20 * 2**20, "the server kept reading far past its limit"
    assert time.perf_counter() - start < 30
    assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200
    # a chunked body under the limit is still read whole
    r = httpx.post(f"{server.base}/v1/classify", content=iter([b'{"paragraphs": ', '["依法行政"]}'.encode()]),
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 200 and r.json()["results"][0]["category"]


def test_ids_are_bounded_before_they_are_echoed(server):
    r = httpx.get(f"{server.base}/v1/reports/" + "a" * 10_000, timeout=10)
    assert r.status_code == 404 and "a" * 65 not in r.text
    r = httpx.get(f"{server.base}/healthz", headers={"X-Request-ID": "x" * 8000}, timeout=10)
    assert r.status_code == 200 and len(r.headers["X-Request-ID"]) <= 64
    r = httpx.get(f"{server.base}/healthz", headers={"X-Request-ID": "my-trace-01"}, timeout=10)
    assert r.headers["X-Request-ID"] == "my-trace-01"


def test_title_and_region_are_bounded(server):
    r = httpx.post(f"{server.base}/v1/reports", json={"text": "一、主要工作\n全年办理行政复议案件12件。", "title": "标" * 100_000},
                   headers=KEY, timeout=30)
    assert r.status_code == 422 and "title" in r.json()["error"]["message"]


def test_405_lists_every_method_of_the_path(server):
    r = httpx.put(f"{server.base}/v1/reports", timeout=10)
    assert r.status_code == 405 and set(r.headers["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}


def test_a_500_is_one_json_answer_and_one_traceback(tmp_path, monkeypatch, caplog):
    from fazhi.serving import routes

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(routes, "_tag", broken)
    with TestClient(create_app(Settings(db=tmp_path / "e.db", model="rules", api_keys="k")),
                    raise_server_exceptions=False) as client:
        r = client.post("/v1/reports", json={"text": "一、主要工作\n全年办理行政复议案件12件。"}, headers=KEY)
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal"
        assert r.headers["X-Request-ID"] in r.json()["error"]["message"]
        assert client.get("/healthz").status_code == 200
    tracebacks = [rec for rec in caplog.records if rec.exc_info]
    assert len(tracebacks) == 1 and "boom" in str(tracebacks[0].exc_info[1])


def test_openapi_documents_400_and_503(tmp_path):
    with TestClient(create_app(Settings(db=tmp_path / "o.db", model="rules", api_keys="k"))) as client:
        post = client.get("/openapi.json").json()["paths"]["/v1/reports"]["post"]["responses"]
    assert {"400", "413", "503"} <= set(post)


def test_bench_api_measures_classify_during_uploads():
    from conftest import REPORTS
    from fazhi.serving.loadtest import bench_api

    text = REPORTS[0].read_text(encoding="utf-8")
    result = bench_api(["依法行政，建设法治政府。", "全年办理行政复议案件12件。"], "rules", clients=2, seconds=1.0,
                       report=text)
    during = result["during_uploads"]
    assert during["reports_uploaded"] >= 1 and during["errors"] == 0 and during["requests"] > 0
    assert result["p99_ratio_during_uploads"] > 0


def test_query_bounds_and_unechoed_ids(tmp_path):
    with TestClient(create_app(Settings(db=tmp_path / "b.db", model="rules", api_keys="k"))) as client:
        r = client.delete("/v1/reports/" + "b" * 5000, headers=KEY)
        assert r.status_code == 404 and "b" * 65 not in r.text
        assert client.get("/v1/paragraphs", params={"region": "区" * 101}).status_code == 422
        assert client.get("/v1/paragraphs", params={"report_id": "x" * 65}).status_code == 422
