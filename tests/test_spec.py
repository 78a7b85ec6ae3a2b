"""Spec, pid file and state resolution on good and bad input (no root needed)."""

import json
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runctrace.runc import files as spec
from runctrace.runc.proc import process_start_ticks
from runctrace.runc.spec import spec_fields as fields_of


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "ociVersion": "1.0.2", "hostname": "h", "root": {"path": "rootfs"},
        "process": {"args": ["sh", "-c", "true"], "cwd": "/"}, "annotations": {"a": "b"},
    }))
    return tmp_path


def test_good_config(bundle):
    config, err = spec.read_config(str(bundle))
    assert err is None and config["hostname"] == "h"
    fields = fields_of(config, str(bundle))
    assert fields == {
        "hostname": "h", "process_args": ["sh", "-c", "true"], "cwd": "/",
        "root_path": str(bundle / "rootfs"), "annotations": [("a", "b")], "truncated": False,
    }


@pytest.mark.parametrize("content,needle", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe{}", "not valid UTF-8"),
    (b"[1, 2]", "JSON list, not an object"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"hostname": "\\ud800"}', "surrogate"),
    (b"", "not valid JSON"),
])
def test_bad_config(tmp_path, content, needle):
    (tmp_path / "config.json").write_bytes(content)
    config, err = spec.read_config(str(tmp_path))
    assert config is None and needle in err


def test_missing_bundle_and_config(tmp_path):
    assert "does not exist" in spec.read_config(str(tmp_path / "nope"))[1]
    assert "config.json does not exist" in spec.read_config(str(tmp_path))[1]
    assert spec.read_config(None) == (None, "bundle unknown")
    (tmp_path / "file").write_text("x")
    assert "not a directory" in spec.read_config(str(tmp_path / "file"))[1]


def test_symlinked_config_is_not_followed(tmp_path, bundle):
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").symlink_to(bundle / "config.json")
    config, err = spec.read_config(str(other))
    assert config is None and "symlink" in err


def test_oversized_config(tmp_path, monkeypatch):
    monkeypatch.setattr(spec, "MAX_CONFIG_BYTES", 1000)
    (tmp_path / "config.json").write_text(json.dumps({"x": "y" * 2000}))
    config, err = spec.read_config(str(tmp_path))
    assert config is None and "over the 1000-byte limit" in err


def test_fifo_config_does_not_block(tmp_path):
    os.mkfifo(tmp_path / "config.json")
    config, err = spec.read_config(str(tmp_path))
    assert config is None and "not a regular file" in err


@pytest.mark.parametrize("content,ok", [(b"1234", 1234), (b"1234\n", 1234), (b"garbage", None), (b"-5", None), (b"", None), (b"99999999999", None)])
def test_pid_file(tmp_path, content, ok):
    p = tmp_path / "init.pid"
    p.write_bytes(content)
    pid, err = spec.read_pid_file(str(p))
    assert pid == ok
    assert (err is None) == (ok is not None)


def test_state(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({
        "id": "x", "init_process_pid": 42, "init_process_start": 7,
        "config": {"labels": ["bundle=/srv/b"]},
    }))
    state, err = spec.read_state(str(tmp_path))
    assert err is None and state["init_process_pid"] == 42
    assert spec.state_bundle(state) == "/srv/b"
    (tmp_path / "state.json").write_text(json.dumps({"id": "x"}))
    assert "init_process_pid" in spec.read_state(str(tmp_path))[1]


def test_spec_fields_tolerate_any_shape():
    for junk in (None, {}, {"process": "x"}, {"process": {"args": "notalist"}}, {"annotations": [1]}):
        fields = fields_of(junk, "/b")
        assert fields["process_args"] is None and fields["annotations"] is None


def test_process_start_ticks_of_self():
    assert process_start_ticks(os.getpid()) > 0
    assert process_start_ticks(2**22 + 5) is None


def test_huge_state_is_read_from_its_head(tmp_path, monkeypatch):
    monkeypatch.setattr(spec, "MAX_STATE_BYTES", 1000)
    head = '{"id":"big","init_process_pid":4242,"init_process_start":99,"created":"2026-11-28T10:02:13.9Z",'
    (tmp_path / "state.json").write_text(head + '"config":{"labels":["' + "x" * 5000 + '"]}}')
    state, err = spec.read_state(str(tmp_path))
    assert err is None
    assert state == {"id": "big", "init_process_pid": 4242, "init_process_start": 99, "created": "2026-11-28T10:02:13.9Z"}
    (tmp_path / "state.json").write_text('{"config":"' + "x" * 5000 + '"}')
    assert "no init_process_pid" in spec.read_state(str(tmp_path))[1]


def test_state_head_reads_runcs_first_fields_only(tmp_path):
    full = {"id": "c1", "init_process_pid": 4242, "init_process_start": 99, "created": "2026-11-28T10:02:13.9Z",
            "config": {"labels": ["bundle=/srv/b"], "hostname": "h" * 10000}}
    (tmp_path / "state.json").write_bytes(_go_json(full))
    state, err = spec.read_state(str(tmp_path), head_only=True)
    assert err is None
    assert state == {k: full[k] for k in ("id", "init_process_pid", "init_process_start", "created")}
    # not laid out as runc writes it: read whole, the same answer as read_state
    (tmp_path / "state.json").write_text(json.dumps({"init_process_pid": 7, "id": "x", "config": {"labels": []}}))
    state, err = spec.read_state(str(tmp_path), head_only=True)
    assert err is None and state == spec.read_state(str(tmp_path))[0] and state["init_process_pid"] == 7
    (tmp_path / "state.json").write_bytes(b'{"id":"x","init_process_pid":0,"init_process_start":1,"created":"2026-11-28T10:02:13Z"}')
    assert "no valid init_process_pid" in spec.read_state(str(tmp_path), head_only=True)[1]
    (tmp_path / "state.json").unlink()
    assert "does not exist" in spec.read_state(str(tmp_path), head_only=True)[1]


def _go_json(value) -> bytes:
    """JSON as runc's Go encoder writes it: compact, with <, > and & escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


_ids = st.text(st.sampled_from("abcdefXYZ0189_.-+"), min_size=1, max_size=64)
_bundles = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(cid=_ids, pid=st.integers(1, 2**22), start=st.integers(0, 2**40), bundle=_bundles,
       annotations=st.dictionaries(st.sampled_from(["bundle", "io.k8s", "a", "x]"]), _bundles, max_size=4),
       extra=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4))
def test_state_projection_matches_the_full_parse(cid, pid, start, bundle, annotations, extra):
    full = {
        "id": cid, "init_process_pid": pid, "init_process_start": start, "created": "2026-11-28T10:02:13.913754346Z",
        "config": {"rootfs": "/r", "mounts": [{"source": "labels", "destination": '"labels":["bundle=/evil"]'}],
                   "sysctl": extra,
                   # as runc's specconv: one label per annotation, then the bundle last
                   "labels": [f"{k}={v}" for k, v in annotations.items()] + [f"bundle={bundle}"]},
    }
    state, err = spec.parse_state(_go_json(full), "state.json")
    assert err is None
    assert "mounts" not in state["config"]  # the projection, not the full parse
    for key in ("id", "init_process_pid", "init_process_start", "created"):
        assert state[key] == full[key]
    assert state["config"]["labels"] == full["config"]["labels"]
    assert spec.state_bundle(state) == spec.state_bundle(full) == bundle


def test_state_not_written_by_runc_is_parsed_whole():
    data = json.dumps({"init_process_pid": 7, "id": "x", "config": {"labels": ["bundle=/b"], "hostname": "h"}}).encode()
    state, err = spec.parse_state(data, "state.json")
    assert err is None and state["config"]["hostname"] == "h" and spec.state_bundle(state) == "/b"


def test_state_with_a_lone_surrogate_in_its_bundle_is_an_error():
    data = b'{"id":"x","init_process_pid":7,"init_process_start":1,"created":"2026-11-28T10:02:13Z",' \
           b'"config":{"labels":["bundle=/b\\ud800"]}}'
    state, err = spec.parse_state(data, "state.json")
    assert state is None and "surrogate" in err


@pytest.mark.parametrize("text, ns", [
    ("2026-11-28T10:02:13.913754346Z", 1795860133913754346),
    ("1970-01-01T00:00:01.5Z", 1_500_000_000),
    ("1970-01-01T00:00:01Z", 1_000_000_000),
    ("2026-02-30T00:00:00Z", None),
    ("2026-11-28T10:02:13+01:00", None),
    ("2026-11-28T10:02:13.1234567891Z", None),
    (None, None),
])
def test_rfc3339(text, ns):
    assert spec.rfc3339_to_ns(text) == ns


def test_read_proc_reads_a_long_cmdline_whole():
    """procfs hands out a long /proc/PID/cmdline over several reads."""
    import subprocess

    from runctrace.runc.proc import read_proc

    # a shell that waits, its argv ~60 KB long
    args = ["/bin/sh", "-c", "read x", "sh", *(f"arg{i:05d}-" + "x" * 50 for i in range(1000))]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE)
    try:
        time.sleep(0.2)
        raw = read_proc(f"/proc/{proc.pid}/cmdline")
    finally:
        proc.kill()
        proc.wait()
    assert raw.split(b"\0")[:-1] == [a.encode() for a in args]


def test_a_forged_state_cannot_name_a_pid_or_time_no_column_holds():
    """A non-root runc caller controls its own --root: its state.json is outside data."""
    big_pid = b'{"id":"c","init_process_pid":3000000000,"init_process_start":1,"created":"2026-01-01T00:00:00Z"}'
    assert spec.parse_state(big_pid, "state.json")[0] is None
    assert spec.rfc3339_to_ns("3000-01-01T00:00:00Z") is None  # past int64 nanoseconds
    numeric_id = b'{"id":"1234","init_process_pid":7,"init_process_start":1,"created":"2026-01-01T00:00:00Z"}'
    assert spec._state_from_head(numeric_id, "state.json")[0]["id"] == "1234"  # an ID stays a string


def test_an_unterminated_string_full_of_escapes_is_an_error():
    value, err = spec.parse_json_bytes(b"[" * 65 + b'"\\' * 16000, "f")
    assert value is None and "not valid JSON" in err


def test_a_pid_file_that_is_a_device_is_refused_unopened(tmp_path):
    # (/dev/null is harmless to open; what matters is the answer without a read)
    pid, err = spec.read_pid_file("/dev/null")
    assert pid is None and "is not a regular file" in err
    secret = tmp_path / "secret"
    secret.write_text("root-only-content\n")
    pid, err = spec.read_pid_file(str(secret))
    assert pid is None and "root-only" not in err  # the content is never quoted
