"""Dynamic micro-batching: concurrent requests share one model call.

Requests queue up; one worker takes the first, waits at most ``max_wait_ms`` for more, and
runs the classifier once on up to ``max_batch`` paragraphs. Model work runs on one thread
(``executor``), so the model is never called from two threads at once and the event loop
stays free to accept requests.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

from fazhi.models.base import Classifier, HeadingPaths, Prediction

T = TypeVar("T")


@dataclass
class _Job:
    texts: list[str]
    paths: list
    future: asyncio.Future


class Batcher:
    """``await batcher.predict(texts, paths)`` from any request; ``enabled=False`` runs each request alone."""

    def __init__(self, clf: Classifier, max_batch: int = 64, max_wait_ms: float = 5.0, enabled: bool = True):
        self.clf = clf
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.enabled = enabled
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fazhi-model")
        self.batches = 0  # model calls made, for /v1/model and tests
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    async def run(self, fn: Callable[..., T], *args) -> T:
        """Run other model work (a whole report) on the model thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def predict(self, texts: Sequence[str], heading_paths: HeadingPaths = None) -> list[Prediction]:
        if not texts:
            return []
        if self._queue is None:
            raise RuntimeError("Batcher.start() was not awaited")
        job = _Job(list(texts), list(heading_paths) if heading_paths is not None else [None] * len(texts),
                   asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        return await job.future

    async def _run(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            size = len(jobs[0].texts)
            if self.enabled:
                deadline = time.monotonic() + self.max_wait
                while size < self.max_batch:
                    timeout = deadline - time.monotonic()
                    if timeout <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(self._queue.get(), timeout)
                    except asyncio.TimeoutError:
                        break
                    jobs.append(job)
                    size += len(job.texts)
            texts = [t for j in jobs for t in j.texts]
            paths = [p for j in jobs for p in j.paths]
            try:
                preds = await self.run(self.clf.predict, texts, paths)
            except Exception as err:  # noqa: BLE001 - handed to the requests that caused it
                await self._alone(jobs, err)
                continue
            self.batches += 1
            start = 0
            for j in jobs:
                if not j.future.done():  # the client may have gone away
                    j.future.set_result(preds[start:start + len(j.texts)])
                start += len(j.texts)

    async def _alone(self, jobs: list[_Job], err: Exception) -> None:
        """After a merged call failed: each request again on its own, so that one bad input
        fails its own request and never another's."""
        if len(jobs) == 1:
            if not jobs[0].future.done():
                jobs[0].future.set_exception(err)
            return
        for j in jobs:
            if j.future.done():
                continue
            try:
                preds = await self.run(self.clf.predict, j.texts, j.paths)
            except Exception as own:  # noqa: BLE001 - this request's own failure
                j.future.set_exception(own)
                continue
            self.batches += 1
            if not j.future.done():
                j.future.set_result(preds)
