"""The `runctrace record` command end to end, as an operator runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import runc
from runctrace.store.schema import SCHEMA, SCHEMA_VERSION

RUNCTRACE = [sys.executable, "-m", "runctrace"]


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*RUNCTRACE, *args], capture_output=True, text=True, timeout=120, **kw)


def test_help_has_examples():
    res = cli("record", "--help")
    assert res.returncode == 0
    assert "Examples" in res.stdout and "runctrace record --backend fanotify" in res.stdout
    top = cli("--help")
    assert "record" in top.stdout and "report" in top.stdout


def test_unknown_backend_is_one_line():
    res = cli("record", "--backend", "nope", "-d", "0.1")
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0 and "unknown backend 'nope'" in res.stderr


@pytest.mark.root
def test_without_privileges_is_one_line(tmp_path):
    """As root but with every capability dropped: fanotify_init is refused."""
    out = tmp_path / "x.parquet"
    res = subprocess.run(
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *RUNCTRACE, "record", "--backend", "fanotify", "-o", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0, res.stderr
    assert "not permitted" in res.stderr and "root" in res.stderr
    assert not out.exists()


def test_not_root_message(monkeypatch):
    from runctrace.backends.fanotify import FanotifyNotifier

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    support = FanotifyNotifier.supported()
    assert not support and "needs root" in support.reason


@pytest.mark.root
def test_bad_output_path_is_one_line(tmp_path):
    res = cli("record", "--backend", "fanotify", "-o", str(tmp_path / "no" / "such" / "x.parquet"), "-d", "1")
    assert res.returncode == 1
    assert "does not exist" in res.stderr and "Traceback" not in res.stderr


class Recorder:
    """`runctrace record` running in the background."""

    def __init__(self, output: Path, *extra: str) -> None:
        self.output = output
        self.proc = subprocess.Popen(
            [*RUNCTRACE, "record", "--backend", "fanotify", "-o", str(output), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.proc.stderr.readline()  # "runctrace: backend: ...; recording to ..."
        assert "recording to" in line, line + self.proc.stderr.read()

    def stop(self, sig=signal.SIGINT, timeout: float = 30) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


def record_one_container(tmp_path, bundles, container_ids) -> tuple[Path, str]:
    """A recording (one file) of one `true` container; returns its path and the ID."""
    out = tmp_path / "rec.parquet"
    rec = Recorder(out)
    cid = container_ids()
    runc("run", cid, cwd=bundles.make(["true"]))
    time.sleep(0.3)
    assert rec.stop()[0] == 0
    return out, cid


@pytest.mark.root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_record_real_containers(tmp_path, bundles, container_ids, sig):
    out = tmp_path / "rec.parquet"
    rec = Recorder(out)
    b = bundles.make(["sh", "-c", "exit 2"], annotations={"team": "sre"})
    ids = [container_ids() for _ in range(3)]
    for cid in ids:
        runc("run", cid, cwd=b, check=False)
    time.sleep(0.5)
    code, stdout, stderr = rec.stop(sig)
    assert code == 0, stderr
    for cid in ids:
        assert f"add     {cid}" in stdout and f"remove  {cid}" in stdout
    table = pq.read_table(out)
    assert table.schema.equals(SCHEMA, check_metadata=False)
    assert table.schema.metadata[b"runctrace.schema_version"] == SCHEMA_VERSION.encode()
    rows = [r for r in table.to_pylist() if r["container_id"] in ids]
    assert sorted((r["container_id"], r["type"]) for r in rows) == sorted((c, t) for c in ids for t in ("add", "remove"))
    for r in rows:
        assert r["backend"] == "fanotify" and r["bundle"] == str(b)
        assert r["process_args"] == ["sh", "-c", "exit 2"]
        assert r["hostname"] == b.name and r["root_path"] == str(bundles.rootfs)
        assert dict(r["annotations"]) == {"team": "sre"}
        assert r["runtime"] == "/usr/bin/runc" or r["runtime"].endswith("/runc")
        assert r["manager"] == "by-hand"
        if r["type"] == "remove":
            assert r["exit_code"] == 2
            assert r["lifetime_ns"] > 0
    meta = pq.read_metadata(out).metadata
    assert b'"lost": 0' in meta[b"runctrace.stats"]


@pytest.mark.root
def test_duckdb_reads_the_recording(tmp_path, bundles, container_ids):
    import duckdb

    out, cid = record_one_container(tmp_path, bundles, container_ids)
    con = duckdb.connect()
    rows = con.execute(
        "SELECT type, container_pid, process_args[1], annotations, epoch_ns(time) <= time_ns + 1000 "
        f"FROM read_parquet('{out}') WHERE container_id = ? ORDER BY time_ns", [cid]
    ).fetchall()
    assert [r[0] for r in rows] == ["add", "remove"]
    assert rows[0][1] == rows[1][1] and rows[0][2] == "true" and rows[0][4]


@pytest.mark.root
def test_duration_stops_by_itself(tmp_path):
    out = tmp_path / "d.parquet"
    start = time.monotonic()
    res = cli("record", "--backend", "fanotify", "-o", str(out), "-d", "1")
    assert res.returncode == 0, res.stderr
    assert 0.9 < time.monotonic() - start < 15
    assert pq.read_table(out).schema.equals(SCHEMA, check_metadata=False)


def _timed_run(bundle: Path, cid: str) -> float:
    start = time.monotonic()
    runc("run", cid, cwd=bundle)
    return time.monotonic() - start


@pytest.mark.root
@pytest.mark.parametrize("how", ["SIGSTOP", "SIGKILL"])
def test_frozen_or_killed_recorder_never_delays_containers(tmp_path, bundles, container_ids, how):
    """A recorder that is stopped or killed must not hold any container start hostage."""
    b = bundles.make(["true"])
    baseline = [_timed_run(b, container_ids()) for _ in range(5)]
    rec = Recorder(tmp_path / "frozen.parquet")
    rec.proc.send_signal(getattr(signal, how))
    if how == "SIGKILL":
        rec.proc.wait(10)
    stalled = [_timed_run(b, container_ids()) for _ in range(10)]
    assert max(stalled) < statistics.median(baseline) + 1.0, (baseline, stalled)
    if how == "SIGSTOP":
        # Containers that are still running after SIGCONT are all reported: the
        # recorder notices it fell behind and finds them in runc's state.
        sleeper = bundles.make(["sleep", "30"])
        running = [container_ids() for _ in range(3)]
        for cid in running:
            runc("run", "-d", cid, cwd=sleeper)
        rec.proc.send_signal(signal.SIGCONT)
        time.sleep(1.5)
        for cid in running:
            runc("kill", cid, "KILL")
        time.sleep(0.5)
        code, stdout, stderr = rec.stop()
        assert code == 0, stderr
        for cid in running:
            pid = re.search(rf"^add +{cid} pid=(\d+)", stdout, re.M)
            assert pid, stdout
            assert re.search(rf"^remove +{cid} pid={pid.group(1)} signal=9", stdout, re.M), stdout
        # and the containers that came and went unseen are not silent either
        assert re.search(r"[1-9]\d* missed", stderr), stderr


@pytest.mark.root
def test_report_on_a_recording(tmp_path, bundles, container_ids):
    out, _ = record_one_container(tmp_path, bundles, container_ids)
    res = cli("report", str(out))
    assert res.returncode == 0, res.stderr
    assert "events" in res.stdout


def test_report_on_garbage_is_one_line(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    res = cli("report", str(bad))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0, res.stderr


@pytest.mark.root
@pytest.mark.parametrize("keep_env", [False, True])
def test_environment_is_redacted_unless_kept(tmp_path, bundles, container_ids, keep_env):
    out = tmp_path / "env.parquet"
    rec = Recorder(out, *(["--keep-env"] if keep_env else []))
    b = bundles.make(["true"])
    spec = json.loads((b / "config.json").read_text())
    spec["process"]["env"] = ["PATH=/bin", "DB_PASSWORD=hunter2"]
    spec["hooks"] = {"poststop": [{"path": "/bin/true", "env": ["TOKEN=s3cret"]}]}
    (b / "config.json").write_text(json.dumps(spec))
    cid = container_ids()
    runc("run", cid, cwd=b)
    time.sleep(0.3)
    assert rec.stop()[0] == 0
    rows = [r for r in pq.read_table(out).to_pylist() if r["container_id"] == cid]
    add, remove = sorted(rows, key=lambda r: r["time_ns"])
    assert (add["type"], remove["type"], remove["config_json"]) == ("add", "remove", None)  # the spec once, on the add
    config = json.loads(add["config_json"])
    if keep_env:
        assert "DB_PASSWORD=hunter2" in config["process"]["env"]
    else:
        assert "hunter2" not in add["config_json"] and "s3cret" not in add["config_json"]
        assert config["process"]["env"] == ["PATH=<redacted>", "DB_PASSWORD=<redacted>"]
        assert config["hooks"]["poststop"][0]["env"] == ["TOKEN=<redacted>"]


@pytest.mark.root
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_watch(bundles, container_ids, as_json):
    proc = subprocess.Popen(
        [*RUNCTRACE, "watch", "--backend", "fanotify", *(["--json"] if as_json else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = proc.stderr.readline()
    assert "backend: fanotify" in line, line + proc.stderr.read()
    time.sleep(0.3)
    cid = container_ids()
    runc("run", cid, cwd=bundles.make(["sh", "-c", "exit 5"]), check=False)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    mine = [line for line in out.splitlines() if cid in line]
    if as_json:
        events = [json.loads(line) for line in mine]
        assert [e["type"] for e in events] == ["add", "remove"]
        assert events[1]["exit_code"] == 5 and events[1]["lifetime_ns"] > 0
        assert events[0]["config"]["process"]["args"] == ["sh", "-c", "exit 5"]
    else:
        assert out.splitlines()[0].startswith("TIME (UTC)")
        assert len(mine) == 2 and "add" in mine[0] and "exit 5" in mine[1]


@pytest.mark.root
def test_containers_running_before_start_are_initial_events(tmp_path, bundles, container_ids):
    sleeper = bundles.make(["sleep", "30"])
    cid = container_ids()
    runc("run", "-d", cid, cwd=sleeper)
    pid = json.loads(runc("state", cid).stdout)["pid"]
    out = tmp_path / "data"
    rec = Recorder(out)
    time.sleep(0.5)
    runc("kill", cid, "KILL")
    time.sleep(0.5)
    code, stdout, stderr = rec.stop()
    assert code == 0, stderr
    assert re.search(rf"^initial +{cid} pid={pid} args=sleep 30$", stdout, re.M), stdout
    assert re.search(rf"^remove +{cid} pid={pid} signal=9", stdout, re.M), stdout
    rows = [r for r in pq.read_table(out).to_pylist() if r["container_id"] == cid]
    assert [r["type"] for r in rows] == ["initial", "remove"]
    assert rows[0]["bundle"] == str(sleeper) and rows[0]["process_args"] == ["sleep", "30"]


def test_record_gives_arrow_glibc_malloc_and_report_keeps_the_default():
    """Arrow picks its allocator once, when it loads; the CLI chooses glibc's for
    record (fewer pages touched per flush) and leaves report's alone."""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}

    def pool(code: str, *args: str) -> str:
        out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    via_cli = ("import sys; sys.argv = ['runctrace', sys.argv[1]]; import runctrace.cli, pyarrow; "
               "print(pyarrow.default_memory_pool().backend_name)")
    default = pool("import pyarrow; print(pyarrow.default_memory_pool().backend_name)")
    assert default != "system"  # else this test shows nothing (a pyarrow built without mimalloc/jemalloc)
    assert pool(via_cli, "record") == "system"
    assert pool(via_cli, "report") == default
