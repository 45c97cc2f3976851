"""Load benchmark of ``/v1/classify``: concurrent clients on loopback, batching on versus off.

Each configuration gets its own ``fazhi serve`` process (same model, same machine, same run);
clients post one paragraph per request for a fixed time and the figures are throughput
(requests/second) and p50/p99 latency (ms).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import httpx
import numpy as np

from fazhi.errors import FazhiError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running ``fazhi serve``: its base URL, process (``returncode`` set once stopped) and log file."""

    base: str
    process: subprocess.Popen
    log: Path


@contextmanager
def running_server(model: str | None, batching: bool = True, work: Path | None = None, api_keys: str = "bench",
                   ready_timeout: float = 120) -> Iterator[Server]:
    """A ``fazhi serve`` subprocess on a free loopback port (database and log in ``work``, a new
    temporary directory by default); stopped with SIGINT, as a user would, on exit."""
    port = free_port()
    work = work or Path(tempfile.mkdtemp(prefix="fazhi-serve-"))
    log_path = work / "server.log"
    cmd = [sys.executable, "-m", "fazhi.cli", "serve", "--port", str(port), "--db", str(work / "server.db"),
           "--batching" if batching else "--no-batching"] + (["--model", model] if model else [])
    # the log goes to a file: an unread pipe would fill up and stall the server
    with log_path.open("wb") as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=log,
                                  env={**os.environ, "FAZHI_API_KEYS": api_keys, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if server.poll() is not None:
                raise FazhiError("fazhi serve", f"exited early, see {log_path}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise FazhiError("fazhi serve", f"not ready after {ready_timeout:.0f} s, see {log_path}")
            time.sleep(0.2)
        yield Server(base, server, log_path)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def _load(base: str, texts: Sequence[str], clients: int, seconds: float, report: str | None = None,
                api_key: str = "bench") -> dict:
    """``clients`` clients posting one paragraph each to /v1/classify for ``seconds``; with ``report``,
    one more client uploads that report to /v1/reports over and over meanwhile."""
    latencies: list[float] = []
    errors = uploads = 0
    stop = time.perf_counter() + seconds

    async def uploader(http: httpx.AsyncClient) -> None:
        nonlocal errors, uploads
        while time.perf_counter() < stop:
            r = await http.post(f"{base}/v1/reports", json={"text": report}, headers={"X-API-Key": api_key})
            uploads += r.status_code == 201
            errors += r.status_code != 201

    async def client(k: int, http: httpx.AsyncClient) -> None:
        nonlocal errors
        i = k
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            r = await http.post(f"{base}/v1/classify", json={"paragraphs": [texts[i % len(texts)]]})
            if r.status_code == 200:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1
            i += clients

    limits = httpx.Limits(max_connections=clients + 1, max_keepalive_connections=clients + 1)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(k, http) for k in range(clients)), *([uploader(http)] if report else []))
        elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    return {"requests": len(latencies), "errors": errors, "seconds": round(elapsed, 2),
            "requests_per_s": round(len(latencies) / elapsed, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
            **({"reports_uploaded": uploads} if report else {})}


def bench_api(texts: Sequence[str], model: str | None = None, clients: int = 16, seconds: float = 20,
              report: str | None = None) -> dict:
    """Throughput and latency of ``/v1/classify`` with batching on and off, measured in one run; with
    ``report`` (a report's text), also with batching on while that report is uploaded again and again
    (``during_uploads``, and ``p99_ratio_during_uploads`` against batching on alone)."""
    if not texts:
        raise FazhiError("bench-api", "no paragraphs to send")
    if clients < 1 or seconds <= 0:
        raise FazhiError("bench-api", "--clients and --seconds must be positive")
    result: dict = {"clients": clients, "seconds_per_run": seconds, "model": model or "release",
                    "cpu_cores": os.cpu_count()}
    for batching in (True, False):
        with running_server(model, batching) as server:
            asyncio.run(_load(server.base, texts, clients, min(2.0, seconds)))  # warm-up, not counted
            result["batching_on" if batching else "batching_off"] = asyncio.run(
                _load(server.base, texts, clients, seconds))
            if batching and report:
                result["during_uploads"] = asyncio.run(_load(server.base, texts, clients, seconds, report))
    on, off = result["batching_on"], result["batching_off"]
    if "during_uploads" in result:
        result["p99_ratio_during_uploads"] = round(result["during_uploads"]["p99_ms"] / on["p99_ms"], 2)
    result["throughput_ratio"] = round(on["requests_per_s"] / off["requests_per_s"], 2) if off["requests_per_s"] else None
    return result
