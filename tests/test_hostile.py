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
from runctrace import spec
from runctrace.backends import backend_class
from runctrace.runcargs import parse_runc_args

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
    fields = spec.spec_fields(config, str(tmp_path))
    assert set(fields) == {"hostname", "process_args", "cwd", "root_path", "annotations", "truncated"}


@given(json_values)
def test_spec_fields_on_any_json(value):
    spec.spec_fields(value if isinstance(value, dict) else {"process": value, "root": value}, "/b")


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
    ("symlink", "symlink"), ("100MiB", "limit"), ("invalid-utf8", "UTF-8"), ("deep", "nested more than"),
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
