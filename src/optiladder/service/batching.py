"""Micro-batching: concurrent requests share one forward pass.

Each request's structure is read and its graphs are built first, per request (in the service: in a worker
process, :mod:`.workers`), so a bad input fails alone before any batching. :class:`MicroBatcher` then takes the
first waiting ``(Prediction, graphs)`` pair, gathers whatever else arrives within ``max_wait_ms`` (up to
``max_batch``), runs :meth:`optiladder.predict.Predictor.predict_prepared` once for all of them and resolves each
request's future. A batch of 8 small crystals costs little more than one, so throughput under load grows with
the number of requests in flight, and the models are only ever used by this one thread. Should a batched
forward pass fail, its items are run one by one, so the failure stays with the input that causes it.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any

log = logging.getLogger(__name__)


class MicroBatcher:
    """Gathers prepared inputs from concurrent callers into batched predictions (one worker thread).

    ``max_batch``: most structures per forward pass; ``max_wait_ms``: how long the worker waits for more
    structures after the first one (ms).
    """

    def __init__(self, predictor: Any, *, max_batch: int = 32, max_wait_ms: float = 2.0):
        self.predictor = predictor
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1e3
        self._queue: queue.Queue[tuple[Any, dict, Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True, name="optiladder-batcher")
        self._thread.start()
        #: sizes of the batches run so far (for tests and monitoring)
        self.batch_sizes: list[int] = []

    def submit_prepared(self, prediction: Any, graphs: dict) -> Future:
        """Queue one input prepared by :func:`optiladder.predict.prepare_input` (``prediction.ok``, graphs built);
        the future resolves to the filled :class:`~optiladder.predict.Prediction`."""
        fut: Future = Future()
        self._queue.put((prediction, graphs, fut))
        return fut

    def submit(self, structure: Any, name: str) -> Future:
        """Queue one validated structure (its graphs are built here, in the caller's thread)."""
        res, graphs = self.predictor.prepare(structure, name, validated=True)
        if graphs is None:
            fut: Future = Future()
            fut.set_result(res)
            return fut
        return self.submit_prepared(res, graphs)

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
            self._predict(items)
            if stop:
                return

    def _predict(self, items: list[tuple[Any, dict, Future]]) -> None:
        try:
            results = self.predictor.predict_prepared([(res, g) for res, g, _ in items])
        except Exception:  # never let the worker die; retry one by one so only the culprit fails
            if len(items) == 1:
                log.exception("prediction of %s failed", items[0][0].name)
                items[0][2].set_exception(RuntimeError(f"{items[0][0].name}: prediction failed"))
                return
            log.warning("batch of %d failed; predicting its inputs one by one", len(items))
            for item in items:
                self._predict([item])
            return
        for (_, _, fut), res in zip(items, results, strict=True):
            fut.set_result(res)
