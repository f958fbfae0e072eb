"""A bounded load test of a running service on this machine, and a server that runs in a thread.

:func:`run_load` sends a fixed number of ``POST /predict`` requests with a fixed concurrency and stops by itself
(every request has a timeout, and the whole run a deadline). Only loopback addresses are accepted as targets.
:class:`ThreadedServer` runs the app with uvicorn in a background thread on a free loopback port (tests,
benchmarks).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class LoadResult:
    """Latencies in ms; ``errors``: failed requests (status ≠ 200, timeouts); ``rps``: requests per second."""

    requests: int
    concurrency: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    first_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"{url}: load tests may only target loopback addresses (127.0.0.0/8, ::1, localhost)")


def run_load(
    base_url: str,
    files: list[tuple[str, bytes]],
    *,
    requests: int = 200,
    concurrency: int = 8,
    timeout: float = 30.0,
    deadline: float = 300.0,
) -> LoadResult:
    """``requests`` uploads (cycling through ``files``: (name, bytes)) at ``concurrency`` in flight.

    Stops when all are done or after ``deadline`` seconds (the rest count as errors).
    """
    import asyncio

    import httpx

    _check_loopback(base_url)
    latencies: list[float] = []
    errors: list[str] = []

    async def main() -> float:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(requests):
            queue.put_nowait(i)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits) as client:

            async def worker() -> None:
                while True:
                    try:
                        i = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    name, data = files[i % len(files)]
                    t0 = time.perf_counter()
                    try:
                        r = await client.post("/predict", files={"file": (name, data)})
                        if r.status_code != 200:
                            errors.append(f"{name}: HTTP {r.status_code} {r.text[:120]}")
                        else:
                            latencies.append((time.perf_counter() - t0) * 1e3)
                    except httpx.HTTPError as exc:
                        errors.append(f"{name}: {type(exc).__name__}: {exc}")

            t0 = time.perf_counter()
            tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
            done, pending = await asyncio.wait(tasks, timeout=deadline)
            for t in pending:
                t.cancel()
            return time.perf_counter() - t0

    seconds = asyncio.run(main())
    lat = np.asarray(latencies) if latencies else np.asarray([np.nan])
    n_err = requests - len(latencies)
    return LoadResult(
        requests=requests,
        concurrency=concurrency,
        errors=n_err,
        seconds=round(seconds, 3),
        rps=round(len(latencies) / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=round(float(np.percentile(lat, 50)), 2),
        p90_ms=round(float(np.percentile(lat, 90)), 2),
        p99_ms=round(float(np.percentile(lat, 99)), 2),
        max_ms=round(float(np.max(lat)), 2),
        first_error=errors[0] if errors else (None if n_err == 0 else "deadline reached"),
    )


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadedServer:
    """Run an ASGI app with uvicorn in a daemon thread on ``127.0.0.1:<free port>``; use as a context manager."""

    def __init__(self, app: Any, port: int | None = None, log_level: str = "warning"):
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level=log_level, access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="optiladder-server")

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() - t0 > 30:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def example_files(folder: str | Path) -> list[tuple[str, bytes]]:
    """(name, bytes) of the structure files in ``folder`` (CIF and POSCAR)."""
    folder = Path(folder)
    out = [(p.name, p.read_bytes()) for p in sorted(folder.iterdir()) if p.suffix in (".cif", ".POSCAR")]
    if not out:
        raise FileNotFoundError(f"{folder}: no CIF or POSCAR files")
    return out
