"""Workers of `kiln clean` die with it: after `kill -9` of a running `kiln clean` (a real process, two pool
processes, each with its extraction worker), two worker processes used to keep running. Now every process it
started asks the kernel for SIGKILL when its parent dies (and polls `os.getppid()` as a fallback)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

SLOW_STEP = '''
import time
from kiln.clean.pipeline import Step

class Slow(Step):
    """Sleeps on every document: the run is still in phase 1 when the test kills it."""
    name = "slow"
    def decide(self, doc):
        time.sleep(0.5)
        return None
'''

SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from kiln.clean import registry
registry.STEPS["slow"] = ("slow_step", "Slow", False)
from kiln.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _warc(path: Path, n: int) -> Path:
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for i in range(n):
        body = f"<html><body><h1>Page {i}</h1><p>Text of page {i} of {path.name}.</p></body></html>".encode()
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        writer.write_record(
            writer.create_warc_record(f"http://a.example/{i}", "response", payload=io.BytesIO(body), http_headers=http)
        )
    path.write_bytes(buf.getvalue())
    return path


def _proc_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, start time) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), fields[0], fields[19])
    return table


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time of every live descendant of `root`."""
    table = _proc_table()
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, state, start) in table.items():
            if ppid == parent and state != "Z" and pid not in found:
                found[pid] = start
                frontier.append(pid)
    return found


def _alive(pid: int, start: str) -> bool:
    """The same process (pid and start time) still exists and is not a zombie."""
    entry = _proc_table().get(pid)
    return entry is not None and entry[2] == start and entry[1] != "Z"


@pytest.mark.parametrize("n_workers", [1, 2])
def test_no_worker_outlives_a_killed_kiln_clean(tmp_path: Path, n_workers: int) -> None:
    """workers=2: two pool processes, each with its extraction worker; workers=1: the shards run in the
    `kiln clean` process itself, with one extraction worker."""
    expected = 2 * n_workers if n_workers > 1 else 1
    (tmp_path / "slow_step.py").write_text(SLOW_STEP)
    script = tmp_path / "kiln_clean.py"
    script.write_text(textwrap.dedent(SCRIPT.format(here=str(tmp_path))))
    config = tmp_path / "clean.toml"
    config.write_text('[[steps]]\nname = "extract"\n\n[[steps]]\nname = "slow"\n')
    inputs = [str(_warc(tmp_path / f"in{i}.warc.gz", 40)) for i in range(4)]
    argv = [
        "clean",
        *inputs,
        "--out",
        str(tmp_path / "out"),
        "--workers",
        str(n_workers),
        "--config",
        str(config),
        "--quiet",
    ]
    proc = subprocess.Popen([sys.executable, str(script), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    workers: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            workers = _descendants(proc.pid)
            if len(workers) >= expected:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        assert len(workers) >= expected, workers
        time.sleep(1.0)  # let them settle into their jobs
        workers = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

        survivors = dict(workers)
        deadline = time.monotonic() + 30  # a bound, not a speed: they go within a poll or two
        while survivors and time.monotonic() < deadline:
            survivors = {p: s for p, s in survivors.items() if _alive(p, s)}
            time.sleep(0.2)
        assert survivors == {}, f"still running after the parent's kill -9: {sorted(survivors)}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid, start in workers.items():  # only the processes this test started
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
