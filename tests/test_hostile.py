"""Hostile input: bundles that runc accepts but a careful reader must not trust,
and property-based tests of the parser and the spec resolver."""

from __future__ import annotations

import json
import os
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EventLog, runc
from runctrace.runc import files as spec
from runctrace.runc.spec import spec_fields as fields_of
from runctrace.backends import backend_class
from runctrace.runc.args import parse_runc_args

# ----------------------------------------------------------------- properties

argv_items = st.text(alphabet=string.ascii_letters + string.digits + "-=/._ ", max_size=20)


@given(st.lists(argv_items, max_size=12), st.one_of(st.none(), st.just("/w")))
def test_parser_never_raises(argv, cwd):
    call = parse_runc_args(["runc", *argv], cwd)
    if call.creates_container:
        assert call.container_id and "/" not in call.container_id
        assert call.bundle is None or os.path.isabs(call.bundle) or cwd is None


ids = st.text(alphabet=string.ascii_letters + string.digits + "_-.", min_size=1, max_size=30).filter(
    lambda s: s not in (".", "..") and not s.startswith("-"))
paths = st.text(alphabet=string.ascii_letters + "/_", min_size=1, max_size=20).map(lambda p: "/" + p.strip("/"))


@given(
    command=st.sampled_from(["create", "run"]), cid=ids, bundle=st.one_of(st.none(), paths),
    pid_file=st.one_of(st.none(), paths), root=st.one_of(st.none(), paths),
    equals=st.booleans(), dash=st.sampled_from(["-", "--"]), debug=st.booleans(),
)
def test_parser_recovers_generated_calls(command, cid, bundle, pid_file, root, equals, dash, debug):
    def flag(name, value):
        return [f"{dash}{name}={value}"] if equals else [f"{dash}{name}", value]

    argv = ["runc"] + (["--debug"] if debug else []) + (flag("root", root) if root else []) + [command]
    argv += (flag("bundle", bundle) if bundle else []) + (flag("pid-file", pid_file) if pid_file else []) + [cid]
    call = parse_runc_args(argv, "/cwd")
    assert call.creates_container, call.error
    assert call.container_id == cid
    assert call.bundle == (os.path.normpath(bundle) if bundle else "/cwd")
    assert call.pid_file == (os.path.normpath(pid_file) if pid_file else None)
    assert call.root == (os.path.normpath(root) if root else "/run/runc")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(data=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())))
def test_spec_resolver_never_raises(tmp_path, data):
    (tmp_path / "config.json").write_bytes(data)
    config, err = spec.read_config(str(tmp_path))
    assert (config is None) != (err is None)
    fields = fields_of(config, str(tmp_path))
    assert set(fields) == {"hostname", "process_args", "cwd", "root_path", "annotations", "truncated"}


@given(json_values)
def test_spec_fields_on_any_json(value):
    fields_of(value if isinstance(value, dict) else {"process": value, "root": value}, "/b")


# -------------------------------------------------- hostile bundles, real runc


def _rss_kib() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _hostile(bundle, kind):
    path = bundle / "config.json"
    cfg = json.loads(path.read_text())
    if kind == "symlink":
        real = bundle / "real-config.json"
        path.rename(real)
        path.symlink_to(real)
    elif kind == "100MiB":
        # valid JSON that runc parses happily: a 100 MiB annotation
        cfg["annotations"] = {"big": "x" * (100 << 20)}
        path.write_text(json.dumps(cfg))
    elif kind == "invalid-utf8":
        # Go's decoder replaces bad UTF-8 silently; the recorder must say so instead
        path.write_bytes(json.dumps(cfg).encode().replace(b'"runc"', b'"r\xffnc"') if b'"runc"' in json.dumps(cfg).encode()
                         else json.dumps(cfg).encode()[:-1] + b',"x":"\xff"}')
    elif kind == "deep":
        # an unknown field nested 5000 deep: within Go's limit (10000), past Python's stack
        path.write_bytes(json.dumps(cfg).encode()[:-1] + b',"deep":' + b"[" * 5000 + b"]" * 5000 + b"}")


@pytest.mark.root
@pytest.mark.parametrize("kind,needle", [
    ("symlink", "symlink"), ("100MiB", "limit"), ("invalid-utf8", "UTF-8"), ("deep", "nested too deeply"),
])
def test_hostile_bundle_gives_an_error_field(bundles, container_ids, kind, needle):
    b = bundles.make(["true"])
    _hostile(b, kind)
    notifier = backend_class("fanotify")()
    log = EventLog(notifier)
    try:
        rss0 = _rss_kib()
        cid = container_ids()
        runc("run", cid, cwd=b, timeout=120)
        log.wait_removed(cid, timeout=30)
        log.settle()
        add, _ = log.assert_one_lifecycle(cid)
        assert add.container_config is None and needle in add.error, add.error
        assert _rss_kib() - rss0 < 32 << 10  # never read the 100 MiB into memory
        # and the recorder is still working
        cid2 = container_ids()
        runc("run", cid2, cwd=bundles.make(["true"]))
        log.wait_removed(cid2)
    finally:
        notifier.close()


# ------------------------------- the recorder against hostile containers, end to end


class _Recording:
    """`runctrace record` on ``backend`` into ``output``, its stdout kept as bytes."""

    def __init__(self, backend: str, output, *extra: str) -> None:
        import subprocess
        import sys
        import threading

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runctrace", "record", "--backend", backend, "-o", str(output), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.lines: list[bytes] = []
        line = self.proc.stderr.readline()
        assert b"recording to" in line, line + self.proc.stderr.read()
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, b"")),
                                        daemon=True)
        self._reader.start()

    def wait_for(self, needle: bytes, timeout: float = 30) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in line for line in list(self.lines)):
                return
            assert self.proc.poll() is None, f"the recorder exited: {self.proc.stderr.read()!r}"
            time.sleep(0.02)
        raise AssertionError(f"no {needle!r} in {self.lines}")

    def stop(self) -> tuple[int, bytes]:
        import signal

        self.proc.send_signal(signal.SIGTERM)
        err = self.proc.communicate(timeout=60)[1]  # nothing hangs past SIGTERM
        self._reader.join(5)
        return self.proc.returncode, err


def _config(bundle) -> dict:
    return json.loads((bundle / "config.json").read_text())


@pytest.mark.root
def test_hostile_containers_never_stop_or_fool_the_recorder(backend, bundles, container_ids, tmp_path):
    import pyarrow.parquet as pq

    from runctrace import safetext

    cases: dict[str, str] = {}  # container ID -> case

    # a bundle path that is not UTF-8
    odd = bundles.make(["true"])
    odd_path = os.fsencode(odd.parent) + b"/b\xff\xfe-\x1b[31m"
    os.rename(odd, odd_path)
    # a number runc takes and Python's int() refuses (over 4,300 digits)
    huge = bundles.make(["true"])
    (huge / "config.json").write_bytes(json.dumps(_config(huge)).encode()[:-1] + b',"n":' + b"9" * 5000 + b"}")
    # args that would draw on the operator's terminal
    loud = bundles.make(["sh", "-c", "true", "\nadd     fake-container pid=1\x1b[2J\x1b]0;owned\x07"])
    # a config.json that is also another file (a hard link)
    linked = bundles.make(["true"])
    os.link(linked / "config.json", tmp_path / "elsewhere.json")
    # a hook that replaces config.json, after runc read it, by a link to a root-only file
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({**_config(linked), "process": {"args": ["SECRET-CONTENT"], "cwd": "/"}}))
    secret.chmod(0o600)
    swapped = bundles.make(["true"])
    cfg = _config(swapped)
    cfg["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": [
        "sh", "-c", f"sleep 0.3; ln -f {secret} {swapped}/config.json"]}]}
    (swapped / "config.json").write_text(json.dumps(cfg))

    out = tmp_path / "data"
    rec = _Recording(backend, out)
    try:
        for case, bundle in [("odd-path", odd_path), ("huge-number", huge), ("loud-args", loud),
                             ("hardlinked", linked), ("swapped", swapped), ("plain", bundles.make(["true"]))]:
            cid = container_ids()
            cases[cid] = case
            runc("run", cid, cwd=bundle)
            rec.wait_for(b"remove  " + cid.encode())
    finally:
        code, err = rec.stop()
    assert code == 0, err
    # the terminal saw one line per event, and no escape sequence (other lines are
    # other containers on the host, whose events the recorder sees too)
    ours = [line for line in rec.lines if any(cid.encode() in line for cid in cases)]
    assert len(ours) == 2 * len(cases), rec.lines
    assert not any(b"\x1b" in line or b"\x07" in line for line in rec.lines), rec.lines
    assert not any(line.startswith(b"add     fake") for line in rec.lines)

    rows = [safetext.load(r) for r in pq.read_table(out).to_pylist()]
    by_case: dict[str, list[dict]] = {}
    for row in rows:
        by_case.setdefault(cases.get(row["container_id"], "other"), []).append(row)
    for cid, case in cases.items():
        kinds = sorted(r["type"] for r in by_case[case])
        assert kinds == ["add", "remove"], (case, by_case[case])
    add = {case: next(r for r in by_case[case] if r["type"] == "add") for case in cases.values()}
    assert add["odd-path"]["bundle"] == os.fsdecode(odd_path)  # stored escaped, read back whole
    assert add["odd-path"]["escaped"] and add["odd-path"]["config_json"]
    assert "number of 5000 characters" in add["huge-number"]["error"]
    assert json.loads(add["loud-args"]["config_json"])["process"]["args"][3].startswith("\nadd")
    assert add["hardlinked"]["config_json"] is None and "hard links" in add["hardlinked"]["error"]
    assert add["hardlinked"]["config_sha256"] and "config-hardlinked" in add["hardlinked"]["flags"]
    # the spec that ran is the one recorded, and the row says the file changed after
    assert json.loads(add["swapped"]["config_json"])["process"]["args"] == ["true"]
    assert "config-changed" in add["swapped"]["flags"]
    assert not any("SECRET-CONTENT" in json.dumps(r, default=str) for r in rows)
    assert add["plain"]["error"] is None and add["plain"]["runc_uid"] == 0 and not add["plain"]["flags"]
    # a spec is stored once: removes carry none
    assert all(r["config_json"] is None for r in rows if r["type"] == "remove")


NOBODY = 65534


@pytest.fixture
def world_reachable_dir():
    """A directory another user can reach (pytest's tmp_path sits under a 0700 one)."""
    import shutil
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp(prefix="runctrace-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _rootless_bundle(base, owner: int):
    """A bundle that runc run by ``nobody`` can start (user namespace mapped to nobody),
    in a directory nobody can reach; config.json owned by ``owner``."""
    import shutil
    import subprocess

    base.mkdir(mode=0o755)
    (base / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", base / "rootfs" / "bin" / "busybox")
    (base / "rootfs" / "bin" / "true").symlink_to("busybox")
    subprocess.run(["runc", "spec", "--rootless"], cwd=base, check=True)
    cfg = _config(base)
    cfg["process"].update(args=["true"], terminal=False)
    for mapping in cfg["linux"]["uidMappings"] + cfg["linux"]["gidMappings"]:
        mapping["hostID"] = NOBODY  # (runc spec maps the user that ran it: root here)
    (base / "config.json").write_text(json.dumps(cfg))
    for path in [base, *base.rglob("*")]:
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
    os.chown(base / "config.json", owner, owner)
    return base


@pytest.mark.root
@pytest.mark.parametrize("config_owner", [NOBODY, 4321], ids=["own-config", "foreign-config"])
def test_a_runc_call_by_another_user_is_recorded_and_flagged(log, world_reachable_dir, config_owner):
    import subprocess
    import uuid

    shared = world_reachable_dir / "b"
    bundle = _rootless_bundle(shared, config_owner)
    cid = f"rl-{uuid.uuid4().hex[:8]}"
    res = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         "runc", "--root", str(shared / "state"), "run", cid],
        cwd=bundle, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    log.wait_removed(cid)
    log.settle()
    add, remove = log.assert_one_lifecycle(cid)
    assert add.runc_uid == NOBODY and "non-root-caller" in add.flags
    assert add.config_uid == config_owner and add.config_sha256
    if config_owner == NOBODY:  # the caller's own file: recorded
        assert add.container_config["process"]["args"] == ["true"] and add.error is None
    else:  # neither root's nor the caller's: not recorded, and said why
        assert add.container_config is None and "config-foreign-owner" in add.flags
        assert "owned by uid 4321" in add.error
    assert remove.exit_code == 0
