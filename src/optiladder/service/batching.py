"""Micro-batching: concurrent requests share one forward pass.

Request handlers parse their structure themselves (in parallel), then hand it to :class:`MicroBatcher`. One
worker thread takes the first waiting structure, gathers whatever else arrives within ``max_wait_ms`` (up to
``max_batch``), runs :meth:`optiladder.predict.Predictor.predict` once for all of them and resolves each
request's future. A batch of 8 small crystals costs little more than one, so throughput under load grows with
the number of requests in flight, and the models are only ever used by this one thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any

log = logging.getLogger(__name__)


class MicroBatcher:
    """Gathers structures from concurrent callers into batched predictions (one worker thread).

    ``max_batch``: most structures per forward pass; ``max_wait_ms``: how long the worker waits for more
    structures after the first one (ms).
    """

    def __init__(self, predictor: Any, *, max_batch: int = 32, max_wait_ms: float = 2.0):
        self.predictor = predictor
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1e3
        self._queue: queue.Queue[tuple[Any, str, Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True, name="optiladder-batcher")
        self._thread.start()
        #: sizes of the batches run so far (for tests and monitoring)
        self.batch_sizes: list[int] = []

    def submit(self, structure: Any, name: str) -> Future:
        """Queue one validated structure; the future resolves to its :class:`~optiladder.predict.Prediction`."""
        fut: Future = Future()
        self._queue.put((structure, name, fut))
        return fut

    def close(self) -> None:
        """Stop the worker after the queued work is done."""
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items = [first]
            stop = False
            while len(items) < self.max_batch:
                try:
                    nxt = self._queue.get(timeout=self.max_wait)
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                items.append(nxt)
            self.batch_sizes.append(len(items))
            try:
                results = self.predictor.predict([s for s, _, _ in items], [n for _, n, _ in items])
                for (_, _, fut), res in zip(items, results, strict=True):
                    fut.set_result(res)
            except Exception as exc:  # never let the worker die: fail the batch's requests instead
                log.exception("batch of %d failed", len(items))
                for _, _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)
            if stop:
                return
