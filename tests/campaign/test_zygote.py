"""The pre-imported zygote that forks one calculation child per job (real processes, real engine)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from optiladder.campaign import child
from optiladder.campaign.forker import fork_call
from optiladder.campaign.task import SERIAL_ENV
from optiladder.campaign.zygote import Zygote

HERE = Path(__file__).parent
STRUCTURES = HERE / "fixtures" / "structures"


def _job(tmp_path: Path, name: str, source: str, protocol: str = "test") -> Path:
    d = tmp_path / name
    d.mkdir()
    spec = {"mat_id": name, "source": source, "protocol": protocol, "split": None, "max_atoms": 64}
    (d / child.SPEC).write_text(json.dumps(spec))
    return d


def test_forked_child_runs_the_job_and_reports_cpu(tmp_path):
    z = Zygote({**os.environ, **SERIAL_ENV})
    try:
        job = z.spawn(_job(tmp_path, "garbage", str(STRUCTURES / "garbage.cif")))
        assert job.wait(timeout=120) == 0 and job.cpu_seconds is not None
        err = json.loads((tmp_path / "garbage" / child.ERROR).read_text())
        assert err["permanent"] and err["error"].startswith(str(STRUCTURES / "garbage.cif"))
        zpid = z.proc.pid
        # the same zygote serves the next job (no new interpreter)
        job2 = z.spawn(_job(tmp_path, "tco", str(STRUCTURES / "TcO_nosetup.json")))
        assert job2.wait(timeout=120) == 0 and z.proc.pid == zpid
        assert "no GPAW PAW setup for Tc" in json.loads((tmp_path / "tco" / child.ERROR).read_text())["error"]
    finally:
        z.close()


@pytest.mark.gpaw
def test_a_running_child_is_killed_as_a_group(tmp_path):
    z = Zygote({**os.environ, **SERIAL_ENV})
    try:
        # a 4-atom cell under the full protocol runs for minutes (1-atom Ne under "test" can finish within the
        # second on an idle machine, which made this check flaky)
        job = z.spawn(_job(tmp_path, "ne", "agm005180383", protocol="gpaw-pbe-v1"))
        with pytest.raises(subprocess.TimeoutExpired):
            job.wait(timeout=1.0)
        assert os.getpgid(job.pid) == job.pid  # own process group, as the fresh-process path
        os.killpg(job.pid, signal.SIGKILL)
        assert job.wait(timeout=30) == -signal.SIGKILL
        assert not (tmp_path / "ne" / child.RESULT).exists()
    finally:
        z.close()


def test_zygote_dies_with_its_parent(tmp_path):
    """A zygote whose parent (the Dask worker) is killed exits: no orphan calculation server."""
    code = (
        "import os, sys; from optiladder.campaign.zygote import Zygote;"
        "z = Zygote(dict(os.environ)); z.spawn(sys.argv[1]); print(z.proc.pid, flush=True); import time;"
        " time.sleep(60)"
    )
    d = _job(tmp_path, "garbage", str(STRUCTURES / "garbage.cif"))
    p = subprocess.Popen([os.sys.executable, "-c", code, str(d)], stdout=subprocess.PIPE, text=True)
    zpid = int(p.stdout.readline())
    p.kill()
    p.wait()
    end = time.time() + 20
    while time.time() < end and Path(f"/proc/{zpid}").exists():
        if "zombie" in next(
            (ln for ln in Path(f"/proc/{zpid}/status").read_text().splitlines() if ln.startswith("State:")),
            "",
        ):
            break
        time.sleep(0.2)
    assert (
        not Path(f"/proc/{zpid}").exists() or "Z" in Path(f"/proc/{zpid}/stat").read_text().split(")")[1][:3]
    )


def test_fork_call_result_error_and_limit():
    assert fork_call(sum, [1, 2, 3]).value == 6
    bad = fork_call(int, "x")
    assert bad.error.startswith("ValueError") and bad.exit_code == 1
    slow = fork_call(time.sleep, 30, timeout=0.5)
    assert slow.timed_out and slow.exit_code == -signal.SIGKILL
