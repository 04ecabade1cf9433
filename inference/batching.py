"""Micro-batching: concurrent requests gathered into one model run, off the event loop.

The first request that arrives opens a batch; the batch is flushed when it holds `max_batch`
requests or `max_wait_s` after it opened, whichever comes first, and `run_batch` gets all of its
requests at once on a small thread pool. Each caller awaits its own result; an exception raised for
the batch is given to every caller in it. Batches run one at a time per worker thread, so a burst
of requests waits in the next batch instead of piling onto the CPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")


class MicroBatcher(Generic[Request, Result]):
    def __init__(
        self,
        run_batch: Callable[[Sequence[Request]], list[Result]],
        executor: Executor,
        *,
        max_batch: int = 16,
        max_wait_s: float = 0.003,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("max_batch must be at least 1 and max_wait_s not negative")
        self._run_batch = run_batch
        self._executor = executor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._pending: list[tuple[Request, asyncio.Future[Result]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self.batches_run = 0
        self.largest_batch = 0

    async def submit(self, request: Request) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((request, future))
        if len(self._pending) >= self.max_batch:
            self._flush(loop)
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait_s, self._flush, loop)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        self.batches_run += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        requests = [request for request, _ in batch]
        work = loop.run_in_executor(self._executor, self._run_batch, requests)
        work.add_done_callback(lambda done: _deliver(done, batch))


def _deliver(
    done: asyncio.Future[list[Result]], batch: list[tuple[Request, asyncio.Future[Result]]]
) -> None:
    error = done.exception()
    results = None if error is not None else done.result()
    if results is not None and len(results) != len(batch):
        error = RuntimeError(f"a batch of {len(batch)} requests returned {len(results)} results")
    for i, (_, future) in enumerate(batch):
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            assert results is not None
            future.set_result(results[i])
