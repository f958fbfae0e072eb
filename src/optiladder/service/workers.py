"""Killable worker processes that read uploaded structures and build their graphs, so no input can stop the service.

A thread cannot stop a C loop that holds the GIL, and a hostile cell can make a parser or a neighbour search
allocate gigabytes. :class:`PreparePool` therefore runs :func:`optiladder.predict.prepare_input` (parse,
validate, graphs, domain warnings) in ``workers`` child processes, each under an address-space limit
(``RLIMIT_AS``, ``memory_mb``). One thread per child hands it one input at a time and waits at most
``timeout`` seconds: a child that runs over is killed (SIGKILL) and replaced, a child that dies (e.g. out of
memory) is replaced, and that input alone gets a one-line error. The event loop, ``/health`` and every other
request carry on meanwhile. Children are started with ``spawn`` (no fork of a threaded server) and import
numpy, pymatgen and the featurizer once, in their warm-up before they report ready (``start_timeout``); for
models with foundation-model node features (the shipped ones) that warm-up also imports torch and loads CHGNet
(seconds on an idle core), so no request pays it and the per-input ``timeout`` covers the input alone.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: Seconds one input may take in a worker before the worker is killed (a real cell takes ~10–50 ms).
DEFAULT_TIMEOUT = 20.0
#: Seconds a worker may take to start and warm up (imports; CHGNet for foundation features: seconds when idle,
#: minutes on a heavily shared machine) before the pool gives up on it.
DEFAULT_START_TIMEOUT = 300.0
#: Address-space limit of a worker process (MiB): Python, numpy, scipy and pymatgen need ~1 GiB of it.
DEFAULT_MEMORY_MB = 3072


#: Inputs each worker reads once at start (a CIF and a POSCAR of diamond Si), so no request pays first-call costs.
_WARM_UP = (
    (
        "data_Si\n_cell_length_a 3.867\n_cell_length_b 3.867\n_cell_length_c 3.867\n_cell_angle_alpha 60\n"
        "_cell_angle_beta 60\n_cell_angle_gamma 60\n_symmetry_space_group_name_H-M 'P 1'\nloop_\n"
        "_atom_site_type_symbol\n_atom_site_label\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
        "Si Si0 0 0 0\nSi Si1 0.25 0.25 0.25\n",
        "warm-up.cif",
    ),
    ("Si\n1.0\n0 2.73 2.73\n2.73 0 2.73\n2.73 2.73 0\nSi\n2\ndirect\n0 0 0\n0.25 0.25 0.25\n", "POSCAR"),
)


class WorkerFailure(RuntimeError):
    """One input whose worker was killed (timeout) or died (memory); ``str(err)`` is ``"<name>: <problem>"``."""


def _child_main(conn: Any, featurizers: dict, domain: Any, max_atoms: int, memory_mb: int) -> None:
    """A worker: limit its memory, import once, then answer ``(text, name)`` with ``(Prediction, graphs)``."""
    import resource
    import warnings

    limit = int(memory_mb) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter("ignore")
    from ..predict import prepare_input

    for (
        text,
        name,
    ) in _WARM_UP:  # import what the CIF and POSCAR readers load lazily, before the first request
        prepare_input(text, name, featurizers, domain, max_atoms=max_atoms, text=True)
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        text, name = msg
        try:
            res, graphs = prepare_input(text, name, featurizers, domain, max_atoms=max_atoms, text=True)
            res.structure = None  # not needed by the service; keeps the reply small
            conn.send(("ok", (res, graphs)))
        except MemoryError:
            conn.send(("error", f"{name}: needs more than {memory_mb} MiB to read"))
        except Exception as exc:  # a bug, not a bad input: report it as such, keep the worker
            log.exception("%s: worker failed", name)
            conn.send(("bug", f"{name}: internal error ({type(exc).__name__})"))


@dataclass
class _Task:
    text: str
    name: str
    future: Future


class _Slot:
    """One child process and the thread that feeds it."""

    def __init__(self, pool: PreparePool, index: int):
        self.pool, self.index = pool, index
        self.proc: Any = None
        self.conn: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"optiladder-prepare-{index}")

    def _start(self, wait: bool = True) -> None:
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the child before it imports numpy
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        p = self.pool
        self.proc = ctx.Process(
            target=_child_main,
            args=(child, p.featurizers, p.domain, p.max_atoms, p.memory_mb),
            daemon=True,
            name=f"optiladder-prepare-{self.index}",
        )
        self.proc.start()
        child.close()
        self.conn = parent
        if wait:
            self._wait_ready()

    def _wait_ready(self) -> None:
        timeout = self.pool.start_timeout
        try:
            ready = self.conn.poll(timeout) and self.conn.recv()[0] == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self._kill()
            raise RuntimeError(f"prepare worker {self.index} did not start within {timeout} s")

    def _kill(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
        if self.proc is not None:
            self.proc.join(timeout=5)
        if self.conn is not None:
            self.conn.close()
        self.proc = self.conn = None
        self.pool.restarts += 1

    def _run(self) -> None:
        while True:
            task = self.pool._tasks.get()
            if task is None:
                if self.proc is not None:
                    try:
                        self.conn.send(None)
                    except OSError:
                        pass
                    self.proc.join(timeout=5)
                    if self.proc.is_alive():
                        self.proc.kill()
                return
            if task.future.cancelled():
                continue
            try:
                if self.proc is None or not self.proc.is_alive():
                    if self.proc is not None:
                        self._kill()
                    self._start()
                self.conn.send((task.text, task.name))
                if not self.conn.poll(self.pool.timeout):  # the clock starts when this worker takes it
                    self._kill()
                    task.future.set_exception(
                        WorkerFailure(
                            f"{task.name}: reading took longer than {self.pool.timeout:g} s (stopped)"
                        )
                    )
                    continue
                kind, payload = self.conn.recv()
            except (EOFError, OSError, BrokenPipeError):  # the child died: memory limit or a crash in C
                self._kill()
                task.future.set_exception(
                    WorkerFailure(
                        f"{task.name}: reading it stopped its worker (over {self.pool.memory_mb} MiB?)"
                    )
                )
                continue
            except RuntimeError as exc:  # could not start a worker
                task.future.set_exception(exc)
                continue
            if kind == "ok":
                task.future.set_result(payload)
            elif kind == "error":
                task.future.set_exception(WorkerFailure(payload))
            else:
                task.future.set_exception(RuntimeError(payload))


class PreparePool:
    """``workers`` killable processes running :func:`optiladder.predict.prepare_input` on uploaded text.

    ``featurizers``/``domain``/``max_atoms``: as the predictor's. ``timeout``: seconds per input (from the time
    a worker takes it); ``memory_mb``: address-space limit per worker. :meth:`submit` returns a future of
    ``(Prediction, graphs)``; it fails with :class:`WorkerFailure` when the worker had to be killed.
    """

    def __init__(
        self,
        featurizers: dict[str, Any],
        domain: Any = None,
        *,
        max_atoms: int = 64,
        workers: int = 2,
        timeout: float = DEFAULT_TIMEOUT,
        memory_mb: int = DEFAULT_MEMORY_MB,
        start_timeout: float = DEFAULT_START_TIMEOUT,
    ):
        self.featurizers, self.domain, self.max_atoms = featurizers, domain, int(max_atoms)
        self.timeout, self.memory_mb, self.start_timeout = (
            float(timeout),
            int(memory_mb),
            float(start_timeout),
        )
        #: workers killed or replaced so far (for tests and monitoring)
        self.restarts = 0
        self._tasks: queue.Queue[_Task | None] = queue.Queue()
        self._slots = [_Slot(self, i) for i in range(max(1, int(workers)))]
        for slot in self._slots:  # start all, then wait: the children import and warm up in parallel
            slot._start(wait=False)
        for slot in self._slots:
            slot._wait_ready()
            slot.thread.start()
        self.restarts = 0

    def submit(self, text: str, name: str) -> Future:
        """Queue one upload; the future gives ``(Prediction, graphs)`` (the prediction has no spectra yet)."""
        fut: Future = Future()
        self._tasks.put(_Task(text, name, fut))
        return fut

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self._slots if s.proc is not None]

    def close(self) -> None:
        for _ in self._slots:
            self._tasks.put(None)
        for slot in self._slots:
            slot.thread.join(timeout=10)


class InlinePool:
    """The unsafe baseline, for benchmarks only: :func:`optiladder.predict.prepare_input` in a thread pool of
    the server process (what the service did before the worker processes; a hostile input can stall it)."""

    def __init__(
        self, featurizers: dict[str, Any], domain: Any = None, *, max_atoms: int = 64, threads: int = 4
    ):
        from concurrent.futures import ThreadPoolExecutor

        self.featurizers, self.domain, self.max_atoms = featurizers, domain, int(max_atoms)
        self.restarts = 0
        self._executor = ThreadPoolExecutor(max(1, int(threads)), thread_name_prefix="optiladder-inline")

    def submit(self, text: str, name: str) -> Future:
        from ..predict import prepare_input

        def run() -> tuple[Any, dict | None]:
            res, graphs = prepare_input(
                text, name, self.featurizers, self.domain, max_atoms=self.max_atoms, text=True
            )
            res.structure = None
            return res, graphs

        return self._executor.submit(run)

    def pids(self) -> list[int]:
        return [os.getpid()]

    def close(self) -> None:
        self._executor.shutdown(wait=True)
