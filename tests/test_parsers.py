"""Every parser of outside data is total: any bytes in, a value or an error out,
never an exception. (Property tests; no root needed.)

The parsers: JSON from outside (config.json, state.json), pid files, runc's argv,
the kernel's connector, inotify and fanotify records, the BPF ring buffer's
records, BTF, RFC 3339 times, and the store's text escaping.
"""

from __future__ import annotations

import json
import os
import struct

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runctrace import _sys, safetext

from runctrace.runc import files as spec
from runctrace.runc.spec import spec_fields as fields_of, trim_config
from runctrace.runc.args import parse_runc_args

# JSON-ish text with what breaks naive parsers: huge numbers, NaN, deep nesting
_nasty_json = st.one_of(
    st.binary(max_size=400),
    st.integers(min_value=1, max_value=6000).map(lambda n: b'{"n":' + b"9" * n + b"}"),
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b'{"a":NaN}', b"[1e400]"]),
    st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.text(max_size=50).map(lambda t: json.dumps({"s": t}).encode()),
    st.binary(max_size=60).map(lambda b: b'{"s":"' + b + b'"}'),
)


@given(_nasty_json)
@example(b'{"x":"\\ud800"}')
def test_json_from_outside_gives_a_value_or_an_error(data):
    value, err = spec.parse_json_bytes(data, "f")
    assert (err is None) or (value is None and isinstance(err, str))
    if err is None:
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # storable as it is


@given(_nasty_json)
def test_state_json_gives_a_state_or_an_error(data):
    state, err = spec.parse_state(data, "state.json")
    assert (state is None) != (err is None)
    if state is not None:
        assert isinstance(state["init_process_pid"], int) and state["init_process_pid"] > 0


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(data=st.one_of(_nasty_json, st.just(b"1" * 100_000)), head_only=st.booleans())
def test_state_files_on_disk_give_a_state_or_an_error(tmp_path, data, head_only):
    (tmp_path / "state.json").write_bytes(data)
    state, err = spec.read_state(str(tmp_path), head_only=head_only)
    assert (state is None) != (err is None)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(st.one_of(st.binary(max_size=40), st.integers(min_value=1, max_value=9000).map(lambda n: b"7" * n),
                 st.sampled_from([b"\xb2", "\u0663".encode(), b"-1", b"0", b"4194305", b" 42\n"])))
def test_pid_files_give_a_pid_or_an_error(tmp_path, data):
    (tmp_path / "pid").write_bytes(data)
    pid, err = spec.read_pid_file(str(tmp_path / "pid"))
    assert (pid is None) != (err is None)
    if pid is not None:
        assert 0 < pid <= 1 << 22 and data.strip() == str(pid).encode()


@given(st.lists(st.text(max_size=30), max_size=15), st.one_of(st.none(), st.text(max_size=20)))
def test_runc_argv_of_any_text_parses(argv, cwd):
    call = parse_runc_args(["runc", *argv], cwd)
    assert call.creates_container in (True, False)


@given(st.lists(st.binary(max_size=30), max_size=15))
def test_runc_argv_of_any_bytes_parses(raw):
    argv = ["runc", *(os.fsdecode(a.replace(b"\0", b"")) for a in raw)]
    parse_runc_args(argv, "/")


_CN_HEAD = struct.Struct("=IHHII" + "IIIHH" + "IIQ")  # nlmsghdr, cn_msg, proc_event header


@given(st.one_of(
    st.binary(max_size=300),
    # well-formed headers for the connector, with any (often too short) data after
    st.tuples(st.integers(0, 400), st.sampled_from([1, 2, 0x200, 0x80000000, 7]), st.binary(max_size=40)).map(
        lambda t: _CN_HEAD.pack(t[0], 3, 0, 0, 0, _sys.CN_IDX_PROC, _sys.CN_VAL_PROC, 0, 0, 0, t[1], 0, 0) + t[2]),
))
def test_connector_messages_decode_or_are_skipped(buf):
    for ev in _sys.decode_proc_events(buf):
        assert isinstance(ev, _sys.ProcEvent)


@given(st.binary(max_size=300))
def test_inotify_records_decode(buf):
    assert all(isinstance(r, _sys.InotifyRecord) for r in _sys.decode_inotify(buf))


@given(st.binary(max_size=300))
def test_fanotify_records_decode_or_raise_value_error(buf):
    try:
        _sys.decode_fanotify(buf)
    except ValueError:
        pass


@given(st.binary(max_size=9000))
def test_ring_buffer_records_decode_or_raise_value_error(raw):
    from runctrace.backends.bcc.records import KernelRecord, decode_record

    try:
        assert isinstance(decode_record(raw), KernelRecord)
    except ValueError:
        pass  # what the loop expects of a bad record: it counts it and goes on


@given(st.binary(max_size=400))
def test_btf_blobs_parse_or_raise_value_error(data):
    from runctrace.backends.bcc.btf import Btf

    try:
        Btf(data)
    except ValueError:
        pass


@given(st.one_of(st.text(max_size=40), st.binary(max_size=40).map(os.fsdecode)))
def test_rfc3339_times_give_ns_or_none(text):
    value = spec.rfc3339_to_ns(text)
    assert value is None or isinstance(value, int)


# text as the kernel hands it over: any bytes, held as surrogateescape
_any_text = st.one_of(st.text(max_size=40), st.binary(max_size=40).map(os.fsdecode))


@given(_any_text)
def test_stored_text_is_utf8_and_reads_back_whole(text):
    stored = safetext.escape(text)
    stored.encode("utf-8")
    assert safetext.unescape(stored) == text
    assert safetext.is_clean(text) == (stored == text.replace("\\", "\\\\") and safetext.is_clean(stored))


@given(_any_text)
def test_printable_text_holds_no_control_character(text):
    shown = safetext.printable(text)
    shown.encode("utf-8")
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)
    assert "\u202e" not in shown and "\n" not in shown


@given(st.dictionaries(st.sampled_from(["container_id", "bundle", "runtime_args", "annotations"]),
                       st.one_of(_any_text, st.lists(_any_text, max_size=3),
                                 st.lists(st.tuples(_any_text, _any_text), max_size=3)), max_size=4))
def test_a_row_stores_and_loads_back(row):
    original = dict(row)
    stored = dict(row)
    stored["escaped"] = safetext.store(stored, ["container_id", "bundle", "runtime_args", "annotations"])
    json.dumps(stored, ensure_ascii=False).encode("utf-8")  # valid UTF-8 throughout
    assert safetext.load(stored) | {"escaped": None} == original | {"escaped": None}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


@given(json_values)
def test_spec_fields_and_their_trim_agree_on_any_json(value):
    config = value if isinstance(value, dict) else {"process": value, "root": value, "annotations": value}
    fields = fields_of(config, None)
    assert fields_of(trim_config(config), None) == fields
