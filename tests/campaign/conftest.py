"""Campaign test helpers: fresh PostgreSQL databases, real CLI subprocesses, process inspection."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
STRUCTURES = HERE / "fixtures" / "structures"
PG_ENV = "OPTILADDER_TEST_PG_URL"
PG_SKIP = f"{PG_ENV} is not set: start a test server with `source .ci/postgres.sh` (as root)"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the test server (dropped afterwards)."""
    admin = os.environ.get(PG_ENV)
    if not admin:
        pytest.skip(PG_SKIP)
    import psycopg

    name = f"optiladder_t_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base, _, _ = admin.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    """A fresh campaign database: a SQLite file, and (if the test server is there) a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "queue.db")
    return request.getfixturevalue("pg_url")


def cli_command(*args: str) -> list[str]:
    """The real ``optiladder`` console script of this environment (or ``python -c`` calling its main)."""
    script = Path(sys.executable).with_name("optiladder")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from optiladder.cli import main; main()", *args]


def run_cli(*args: str, cwd: Path, timeout: float = 240.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_env()
    )


def start_cli(*args: str, cwd: Path, log: Path) -> subprocess.Popen:
    fh = open(log, "wb")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(cli_command(*args), cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=_env())


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def calculations(work_root: Path | str) -> list[int]:
    """PIDs of the live calculation processes under a campaign work root: a ``python -m
    optiladder.campaign.child`` process, or a child forked from the zygote; both run in their job folder."""
    root = str(Path(work_root).resolve())
    out = set(processes_mentioning("optiladder.campaign.child", str(work_root)))
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cwd = os.readlink(d / "cwd")
            state = next(
                (ln for ln in (d / "status").read_text().splitlines() if ln.startswith("State:")), ""
            )
        except (OSError, StopIteration):
            continue
        if cwd.startswith(root + "/") and "zombie" not in state:
            out.add(int(d.name))
    return sorted(out)


def processes_mentioning(*texts: str) -> list[int]:
    """PIDs of live processes whose command line contains every one of ``texts``."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(
                (ln for ln in (d / "status").read_text().splitlines() if ln.startswith("State:")), ""
            )
        except OSError:
            continue
        if all(t in cmd for t in texts) and "zombie" not in state:
            out.append(int(d.name))
    return out


def wait_for(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
    """Poll ``pred`` until it returns something truthy; fail the test with ``what`` after ``timeout`` s."""
    end = time.time() + timeout
    while time.time() < end:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture
def tiny_inputs(tmp_path) -> Path:
    """A folder with two 1-atom crystals (He, Ne), TcO (no PAW setup for Tc), one garbage."""
    d = tmp_path / "inputs"
    shutil.copytree(STRUCTURES, d)
    return d
