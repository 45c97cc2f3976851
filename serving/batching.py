"""Dynamic micro-batching: concurrent requests share one model call.

Requests queue up; one worker takes the first, waits at most ``max_wait_ms`` for more, and
runs the classifier once on up to ``max_batch`` paragraphs. Model work runs on one thread
(``executor``), so the model is never called from two threads at once and the event loop
stays free to accept requests.

Reports are bulk work: their paragraphs are queued in chunks of ``BULK_CHUNK`` behind every
waiting /v1/classify request, so a short request waits for at most one chunk, not for a whole
report, and reports still share whatever the model thread has spare.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
import itertools
from dataclasses import dataclass, field
from typing import Callable, Sequence, TypeVar

from fazhi.models.base import Classifier, HeadingPaths, Prediction

T = TypeVar("T")
URGENT, BULK = 0, 1  # queue priorities: requests that wait on their answer, then reports
BULK_CHUNK = 16  # paragraphs of a report per model call: about 0.2 s of BERT on 2 CPU cores


@dataclass(order=True)
class _Job:
    priority: int
    seq: int  # arrival order within a priority
    texts: list[str] = field(compare=False)
    paths: list = field(compare=False)
    future: asyncio.Future = field(compare=False)


class BulkClassifier:
    """The batcher's classifier as a plain one for code running in a worker thread (the analysis
    of an uploaded report): its calls are queued as bulk work on the event loop ``loop``."""

    def __init__(self, batcher: "Batcher", loop: asyncio.AbstractEventLoop):
        self.batcher, self.loop = batcher, loop
        self.name, self.labels = batcher.clf.name, batcher.clf.labels

    def predict(self, texts: Sequence[str], heading_paths: HeadingPaths = None) -> list[Prediction]:
        return asyncio.run_coroutine_threadsafe(self.batcher.predict(texts, heading_paths, bulk=True),
                                                self.loop).result()


class Batcher:
    """``await batcher.predict(texts, paths)`` from any request; ``enabled=False`` runs each request alone."""

    def __init__(self, clf: Classifier, max_batch: int = 64, max_wait_ms: float = 5.0, enabled: bool = True):
        self.clf = clf
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.enabled = enabled
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fazhi-model")
        self.batches = 0  # model calls made, for /v1/model and tests
        self._queue: asyncio.PriorityQueue[_Job] | None = None
        self._worker: asyncio.Task | None = None
        self._seq = itertools.count()

    async def start(self) -> None:
        self._queue = asyncio.PriorityQueue()
        self._worker = asyncio.create_task(self._run())

    def bulk_classifier(self) -> BulkClassifier:
        """A classifier for a worker thread whose calls queue as bulk work (call on the event loop)."""
        return BulkClassifier(self, asyncio.get_running_loop())

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

    async def predict(self, texts: Sequence[str], heading_paths: HeadingPaths = None,
                      bulk: bool = False) -> list[Prediction]:
        """Predictions for ``texts``; ``bulk`` work (a report) runs in chunks after every waiting request."""
        if not texts:
            return []
        if self._queue is None:
            raise RuntimeError("Batcher.start() was not awaited")
        texts = list(texts)
        paths = list(heading_paths) if heading_paths is not None else [None] * len(texts)
        step = BULK_CHUNK if bulk else len(texts)
        jobs = [_Job(BULK if bulk else URGENT, next(self._seq), texts[i:i + step], paths[i:i + step],
                     asyncio.get_running_loop().create_future()) for i in range(0, len(texts), step)]
        for job in jobs:
            self._queue.put_nowait(job)
        return [p for part in await asyncio.gather(*(j.future for j in jobs)) for p in part]

    async def _run(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            size = len(jobs[0].texts)
            # only requests are merged and waited for: a bulk chunk is a batch of its own
            if self.enabled and jobs[0].priority == URGENT:
                deadline = time.monotonic() + self.max_wait
                while size < self.max_batch:
                    timeout = deadline - time.monotonic()
                    if timeout <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(self._queue.get(), timeout)
                    except asyncio.TimeoutError:
                        break
                    if job.priority != URGENT:
                        self._queue.put_nowait(job)
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
