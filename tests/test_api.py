"""The HTTP API through FastAPI's TestClient: every endpoint, auth, limits and errors."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import REPORTS, SAMPLE, write_docx
from fazhi.errors import FazhiError
from fazhi.models.registry import load_classifier
from fazhi.serving import routes
from fazhi.serving.app import create_app
from fazhi.serving.auth import hash_key, load_key_hashes, new_key
from fazhi.serving.batching import Batcher
from fazhi.serving.store import SQLStore, encode_cursor
from fazhi.settings import Settings

KEY = {"X-API-Key": "test-key"}
REPORT_001 = next(p for p in REPORTS if p.name.startswith("001_"))


@pytest.fixture(autouse=True)
def no_fazhi_env(monkeypatch):
    """Settings() reads FAZHI_* variables: the developer's own must not change these tests."""
    for name in [n for n in os.environ if n.startswith("FAZHI_")]:
        monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def database(db_url, monkeypatch):
    """Every test here runs once on SQLite and once on a real PostgreSQL server."""
    monkeypatch.setattr(sys.modules[__name__], "DB_URL", db_url)


DB_URL = ""  # the current test's database (the fixture above)


def make_settings(tmp_path, **overrides) -> Settings:
    return Settings(db=overrides.pop("db", DB_URL), model="rules", api_keys="test-key,other-key", **overrides)


def make_client(tmp_path, **overrides) -> TestClient:
    return TestClient(create_app(make_settings(tmp_path, **overrides)))


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as c:
        yield c


def upload(client, path, name=None, **fields):
    with open(path, "rb") as f:
        return client.post("/v1/reports", files={"file": (name or path.name, f.read())}, data=fields, headers=KEY)


def assert_error(response, status, *words):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    for w in words:
        assert w in body["error"]["message"]


def test_health_ready_and_model(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    info = client.get("/v1/model").json()
    assert info["name"] == "rules" and "enforcement" in info["labels"] and info["batching"] is True
    assert "X-Request-ID" in client.get("/healthz").headers


def test_classify_shapes(client):
    r = client.post("/v1/classify", json={"paragraphs": [
        "全年收到行政复议申请64件，受理58件，审结55件，综合纠错率21.8%。",
        {"text": "一是部分乡镇综合执法队伍专业力量不足，执法人员持证比例偏低。", "heading_path": ["二、存在的不足"]}]})
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "rules" and len(body["results"]) == 2
    first, second = body["results"]
    assert set(first) == {"text", "category", "scores", "shortcoming", "shortcoming_score"}
    assert sum(first["scores"].values()) == pytest.approx(1.0, abs=1e-3)
    assert second["shortcoming"] is True and first["shortcoming"] is False


@pytest.mark.parametrize("payload, words", [
    ({"paragraphs": []}, ["paragraphs"]),
    ({"paragraphs": [""]}, ["paragraphs"]),
    ({"paragraphs": [3]}, ["paragraphs"]),
    ({"paragraphs": [{"text": "x", "heading_path": "not a list"}]}, ["paragraphs"]),
    ({"texts": ["x"]}, []),
])
def test_classify_bad_bodies(client, payload, words):
    assert_error(client.post("/v1/classify", json=payload), 422, *words)


def test_lone_surrogates_and_oversized_headings_are_rejected(client):
    bad = b'{"paragraphs": [{"text": "\\u4f9d\\u6cd5", "heading_path": ["\\ud800"]}]}'
    assert_error(client.post("/v1/classify", content=bad, headers={"content-type": "application/json"}), 422,
                 "paragraphs.0")
    assert_error(client.post("/v1/classify", content=b'{"paragraphs": ["\\udc00"]}',
                             headers={"content-type": "application/json"}), 422, "paragraphs.0", "unicode")
    assert_error(client.post("/v1/classify", json={"paragraphs": [{"text": "x", "heading_path": ["长" * 501]}]}), 422,
                 "paragraphs")
    assert_error(client.post("/v1/classify", json={"paragraphs": [{"text": "x", "heading_path": ["一"] * 17}]}), 422,
                 "paragraphs")
    assert client.post("/v1/classify", json={"paragraphs": [{"text": "x", "heading_path": ["一"] * 16}]}).status_code == 200


def test_one_failing_request_never_fails_another_in_its_batch():
    """Requests merged into one model call: the call fails on one input; every other request
    gets its labels, the bad one its own error."""
    rules = load_classifier("rules")

    class FailsOnMarker:
        name, labels = rules.name, rules.labels

        def predict(self, texts, heading_paths=None):
            if any("BAD" in t for t in texts):
                raise TypeError("cannot tokenize")
            return rules.predict(texts, heading_paths)

    async def scenario():
        batcher = Batcher(FailsOnMarker(), max_wait_ms=200)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.predict([t]) for t in ["依法行政", "BAD", "行政复议", "执法"]),
                                        return_exceptions=True), batcher.batches
        finally:
            await batcher.stop()

    results, batches = asyncio.run(scenario())
    assert isinstance(results[1], TypeError)
    assert [r[0].category for i, r in enumerate(results) if i != 1] == [p.category for p in rules.predict(
        ["依法行政", "行政复议", "执法"])]
    assert batches == 3  # the merged call failed; the three good requests ran alone


def test_classify_malformed_json_and_limits(tmp_path):
    with make_client(tmp_path, max_paragraphs=3, max_paragraph_chars=50, max_bytes=2000) as c:
        r = c.post("/v1/classify", content=b'{"paragraphs": [', headers={"content-type": "application/json"})
        assert_error(r, 422)
        assert_error(c.post("/v1/classify", json={"paragraphs": ["一"] * 4}), 413, "max_paragraphs=3")
        assert_error(c.post("/v1/classify", json={"paragraphs": ["长" * 51]}), 422, "max_paragraph_chars=50")
        assert_error(c.post("/v1/classify", json={"paragraphs": ["长" * 40] * 3 + ["x" * 2000]}), 413,
                     "FAZHI_MAX_BYTES=2000")


def test_report_lifecycle(client, tmp_path):
    r = upload(client, REPORT_001)
    assert r.status_code == 201, r.text
    report = r.json()
    assert report["region"] == "沂源县" and report["year"] == 2019 and report["source"] == REPORT_001.name
    assert any(p["shortcoming"] for p in report["paragraphs"])
    assert report["digest"]["shortcomings"] and report["digest"]["summary"]
    rid = report["id"]

    listed = client.get("/v1/reports").json()
    assert [i["id"] for i in listed["items"]] == [rid] and listed["items"][0]["paragraphs"] == len(report["paragraphs"])
    assert client.get(f"/v1/reports/{rid}").json() == report
    md = client.get(f"/v1/reports/{rid}", params={"format": "md"})
    assert md.headers["content-type"].startswith("text/markdown") and "## Tagged outline" in md.text
    assert f"/v1/reports/{rid}/coverage.png" in md.text
    png = client.get(f"/v1/reports/{rid}/coverage.png")
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"

    assert_error(client.delete(f"/v1/reports/{rid}"), 401)
    assert client.delete(f"/v1/reports/{rid}", headers=KEY).status_code == 204
    assert_error(client.get(f"/v1/reports/{rid}"), 404, rid)
    assert_error(client.delete(f"/v1/reports/{rid}", headers=KEY), 404)
    assert client.get("/v1/paragraphs", params={"report_id": rid}).json()["items"] == []


def test_report_as_json_and_docx(client, tmp_path):
    text = SAMPLE.read_text(encoding="utf-8")
    r = client.post("/v1/reports", json={"text": text, "region": "青溪县", "year": 2023}, headers=KEY)
    assert r.status_code == 201 and r.json()["region"] == "青溪县" and r.json()["source"] is None
    r = upload(client, write_docx(text, tmp_path / "sample.docx"), title="样例")
    assert r.status_code == 201 and r.json()["title"] == "样例"
    assert len(client.get("/v1/reports").json()["items"]) == 2


def test_report_auth(client):
    text = {"text": SAMPLE.read_text(encoding="utf-8")}
    assert_error(client.post("/v1/reports", json=text), 401, "X-API-Key")
    assert_error(client.post("/v1/reports", json=text, headers={"X-API-Key": "wrong"}), 403)
    assert client.post("/v1/reports", json=text, headers={"X-API-Key": "other-key"}).status_code == 201


def test_bad_reports_store_nothing(client, tmp_path):
    assert upload(client, SAMPLE).status_code == 201
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"PK\x03\x04 not really a docx")
    furniture = tmp_path / "furniture.txt"
    furniture.write_text("第 1 页 共 2 页\n- 2 -\n", encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert_error(upload(client, broken), 422, "broken.docx")
    assert_error(upload(client, broken, name="broken.pdf"), 422, "broken.pdf")
    assert_error(upload(client, furniture), 422, "furniture.txt", "no body paragraphs")
    assert_error(upload(client, empty), 422, "empty")
    assert_error(upload(client, SAMPLE, name="report.exe"), 415, ".exe")
    assert_error(client.post("/v1/reports", json={"text": ""}, headers=KEY), 422, "text")
    assert_error(client.post("/v1/reports", json={"text": "x", "year": "soon"}, headers=KEY), 422, "year")
    assert_error(client.post("/v1/reports", content=b"{not json", headers={**KEY, "content-type": "application/json"}), 422)
    assert_error(client.post("/v1/reports", content=b"text", headers={**KEY, "content-type": "text/plain"}), 415)
    assert_error(client.post("/v1/reports", files={"title": (None, "no file")}, headers=KEY), 422, "file")
    assert len(client.get("/v1/reports").json()["items"]) == 1


def test_paragraph_search_filters_and_pages(client):
    for path in REPORTS:
        assert upload(client, path).status_code == 201
    everything = client.get("/v1/paragraphs", params={"limit": 500}).json()
    assert everything["next_cursor"] is None and all(p["kind"] == "body" for p in everything["items"])

    seen, cursor = [], None
    while True:
        page = client.get("/v1/paragraphs", params={"limit": 7, **({"cursor": cursor} if cursor else {})}).json()
        seen += [(p["report_id"], p["id"]) for p in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [(p["report_id"], p["id"]) for p in everything["items"]]

    sc = client.get("/v1/paragraphs", params={"shortcoming": True, "category": "other"}).json()["items"]
    assert sc and all(p["shortcoming"] and p["category"] == "other" for p in sc)
    yiyuan = client.get("/v1/paragraphs", params={"region": "沂源县", "year": 2019}).json()["items"]
    assert yiyuan and {p["region"] for p in yiyuan} == {"沂源县"}
    hits = client.get("/v1/paragraphs", params={"q": "综合纠错率"}).json()["items"]
    assert hits and all("综合纠错率" in p["text"] for p in hits)
    short = client.get("/v1/paragraphs", params={"q": "复议", "limit": 500}).json()["items"]
    assert short and all("复议" in p["text"] for p in short)
    assert len(short) == sum("复议" in p["text"] for p in everything["items"])
    headings = client.get("/v1/paragraphs", params={"kind": "heading"}).json()["items"]
    assert headings and all(p["kind"] == "heading" for p in headings)
    assert_error(client.get("/v1/paragraphs", params={"category": "nonsense"}), 422, "nonsense")
    assert_error(client.get("/v1/paragraphs", params={"cursor": "!!"}), 422, "cursor")
    # well-formed base64 of no rowid SQLite can hold: refused, not a 500
    for value in (10 ** 30, "²"):
        assert_error(client.get("/v1/paragraphs", params={"cursor": encode_cursor(value)}), 422, "cursor")
    assert_error(client.get("/v1/paragraphs", params={"year": 2 ** 63}), 422, "year")
    assert_error(client.get("/v1/paragraphs", params={"limit": 0}), 422, "limit")
    # a NUL ends an FTS5 query string early: refused up front, not a 500 from SQLite
    assert_error(client.get("/v1/paragraphs", params={"q": "依法\x00行政"}), 422, "q")


def test_protected_reads(tmp_path):
    with make_client(tmp_path, protect_reads=True) as c:
        assert_error(c.get("/v1/paragraphs"), 401)
        assert c.get("/v1/paragraphs", headers=KEY).status_code == 200
        # classification is a read, and the most expensive one
        assert_error(c.post("/v1/classify", json={"paragraphs": ["依法行政"]}), 401)
        assert_error(c.post("/v1/classify", json={"paragraphs": ["依法行政"]}, headers={"X-API-Key": "wrong"}), 403)
        assert c.post("/v1/classify", json={"paragraphs": ["依法行政"]}, headers=KEY).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_key_file_is_hashed_and_keys_stay_out_of_logs(tmp_path, caplog):
    key_file = tmp_path / "keys"
    key = new_key(key_file)
    assert key not in key_file.read_text() and hash_key(key) in key_file.read_text()
    assert load_key_hashes(key_file) == {hash_key(key)}
    assert load_key_hashes(key_file, " a, ,b ") == {hash_key(key), hash_key("a"), hash_key("b")}
    settings = Settings(db=DB_URL, model="rules", api_key_file=key_file)
    caplog.set_level(logging.INFO, logger="fazhi.access")
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/reports", json={"text": SAMPLE.read_text(encoding="utf-8")}, headers={"X-API-Key": key})
        assert r.status_code == 201
    assert key not in caplog.text and '"status": 201' in caplog.text and "request_id" in caplog.text
    (tmp_path / "bad").write_text("not-a-hash\n")
    with pytest.raises(FazhiError, match="bad:1"):
        load_key_hashes(tmp_path / "bad")


def test_batcher_merges_concurrent_requests():
    clf = load_classifier("rules")
    texts = [f"全年办理行政复议案件{i}件，依法纠错。" for i in range(12)]

    async def run(enabled: bool):
        batcher = Batcher(clf, max_batch=64, max_wait_ms=50, enabled=enabled)
        await batcher.start()
        results = await asyncio.gather(*(batcher.predict([t]) for t in texts))
        await batcher.stop()
        return batcher.batches, [r[0] for r in results]

    batched_calls, batched = asyncio.run(run(True))
    single_calls, single = asyncio.run(run(False))
    assert single_calls == len(texts) and batched_calls < len(texts) / 2
    assert batched == single == clf.predict(texts)


def test_openapi_has_examples_and_typed_bodies(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/v1/classify", "/v1/reports", "/v1/reports/{report_id}", "/v1/paragraphs", "/healthz", "/readyz",
                 "/v1/model"):
        assert path in paths
    content = paths["/v1/reports"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(content)
    assert "examples" in json.dumps(spec["components"]["schemas"]["ClassifyRequest"])


def test_openapi_declares_the_api_key_scheme(tmp_path):
    """The key is a security scheme: writes require it; reads list it as optional unless reads are protected."""
    key = [{"APIKeyHeader": []}]
    with make_client(tmp_path) as c:
        spec = c.get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["APIKeyHeader"]
    assert {k: scheme[k] for k in ("type", "in", "name")} == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    paths = spec["paths"]
    assert paths["/v1/reports"]["post"]["security"] == key
    assert paths["/v1/reports/{report_id}"]["delete"]["security"] == key
    assert paths["/v1/paragraphs"]["get"]["security"] == [{}, *key]
    assert paths["/v1/classify"]["post"]["security"] == [{}, *key]
    assert "security" not in paths["/healthz"]["get"] and "security" not in paths["/readyz"]["get"]
    with make_client(tmp_path, protect_reads=True) as c:
        protected = c.get("/openapi.json").json()["paths"]
    assert protected["/v1/paragraphs"]["get"]["security"] == key and protected["/v1/reports"]["post"]["security"] == key


def _slow(monkeypatch, owner, name: str, seconds: float = 0.8) -> dict[str, float]:
    """Make ``owner.name`` block its thread for ``seconds`` (as a slow disk or a long parse would);
    the returned dict gets ``start`` and ``end`` of that call (perf_counter seconds)."""
    real, times = getattr(owner, name), {}

    def slow(*args, **kwargs):
        times["start"] = time.perf_counter()
        time.sleep(seconds)
        times["end"] = time.perf_counter()
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, slow)
    return times


@pytest.mark.parametrize("owner, name, method, url, kwargs", [
    (SQLStore, "list", "GET", "/v1/reports", {}),
    (SQLStore, "paragraphs", "GET", "/v1/paragraphs", {}),
    (SQLStore, "add", "POST", "/v1/reports", {"json": {"text": SAMPLE.read_text(encoding="utf-8")}, "headers": KEY}),
    (routes, "read_bytes", "POST", "/v1/reports", {"files": {"file": ("r.txt", SAMPLE.read_bytes())}, "headers": KEY}),
], ids=["store.list", "store.paragraphs", "store.add", "read_bytes"])
def test_blocking_work_leaves_the_event_loop_free(tmp_path, monkeypatch, owner, name, method, url, kwargs):
    """While a request sits in a blocking store call or file parse, /healthz still answers: the
    blocking work runs in a thread, not on the event loop."""
    times = _slow(monkeypatch, owner, name)
    app = create_app(make_settings(tmp_path))

    async def scenario() -> tuple[httpx.Response, float]:
        transport = httpx.ASGITransport(app=app)  # runs the app on this event loop, as uvicorn does
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                        base_url="http://test") as http:
            slow = asyncio.create_task(http.request(method, url, **kwargs))
            while "start" not in times:  # until the slow request is inside the blocking call
                await asyncio.sleep(0.005)
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            answered = time.perf_counter()
            return await slow, answered

    response, answered = asyncio.run(scenario())
    assert response.status_code in (200, 201), response.text
    # on a blocked loop /healthz could only be answered after the blocking call returned
    assert answered < times["end"], f"/healthz answered {answered - times['end']:.3f} s after the blocking call"


def test_a_report_in_progress_never_holds_up_a_short_request():
    """A report's 160 paragraphs are queued as bulk chunks; a /v1/classify request sent after them
    runs after at most the chunk already on the model thread, not after the whole report."""
    from fazhi.serving.batching import BULK_CHUNK

    rules = load_classifier("rules")
    calls: list[int] = []

    class Recording:
        name, labels = rules.name, rules.labels

        def predict(self, texts, heading_paths=None):
            calls.append(len(texts))
            time.sleep(0.02)  # each model call takes time, as a real model's does
            return rules.predict(texts, heading_paths)

    report = [f"全年办理行政复议案件{i}件，依法纠错。" for i in range(160)]

    async def scenario():
        batcher = Batcher(Recording(), max_wait_ms=1)
        await batcher.start()
        try:
            bulk = asyncio.create_task(batcher.predict(report, bulk=True))
            await asyncio.sleep(0.005)  # the first chunk is on the model thread
            short = await batcher.predict(["依法行政"])
            done_before = len(calls)
            return await bulk, short, done_before
        finally:
            await batcher.stop()

    bulk, short, done_before = asyncio.run(scenario())
    assert bulk == rules.predict(report) and short == rules.predict(["依法行政"])
    assert calls.count(BULK_CHUNK) == len(report) // BULK_CHUNK  # the report ran in chunks, none merged
    assert calls.index(1) <= 2, calls  # the short request went in after at most two chunks of the ten
    assert done_before <= 3


def test_the_pages_are_off_while_reads_are_protected(tmp_path):
    with make_client(tmp_path, protect_reads=True) as c:
        for path in ("/", "/search", "/overview", "/ui/overview/heatmap.png"):
            assert_error(c.get(path), 403, "protect")
        assert c.get("/static/app.css").status_code == 200
    with make_client(tmp_path) as c:
        assert c.get("/").status_code == 200 and "上传报告" in c.get("/").text


def test_page_labels_follow_the_model_until_corrected(client):
    r = client.post("/v1/reports", json={"text": SAMPLE.read_text(encoding="utf-8")}, headers=KEY)
    report = r.json()
    flagged = [p for p in report["paragraphs"] if p["shortcoming"]]
    html = client.get(f"/reports/{report['id']}").text
    assert flagged and html.count('data-shortcoming="true"') == len(flagged)
    assert html.count('class="badge warn"') == len(flagged)
    key = f"{report['id']}:{flagged[0]['id']}"
    fixed = client.put(f"/v1/paragraphs/{key}/label", json={"category": "supervision"}, headers=KEY).json()
    assert fixed["correction"]["category"] == "supervision" and fixed["correction"]["shortcoming"] is None
    assert [c["field"] for c in client.get("/v1/corrections").json()["items"]] == ["category"]
    assert_error(client.put(f"/v1/paragraphs/{key}/label", json={"category": "nope"}, headers=KEY), 422, "category")
    assert_error(client.put(f"/v1/paragraphs/{key}/label", json={}, headers=KEY), 422)
    assert_error(client.put(f"/v1/paragraphs/{report['id']}:p9999/label", json={"shortcoming": True}, headers=KEY), 404)
    assert_error(client.put(f"/v1/paragraphs/{key}/label", json={"shortcoming": True}), 401)
