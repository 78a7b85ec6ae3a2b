"""Recovering crashed recorders' journals trusts only the recorder's own, and reads
any bytes without raising: what is no row is counted, set aside, never deleted."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runctrace.events import ContainerEvent, EventType
from runctrace.store import DatasetRecorder, recovery_notes
from runctrace.store.schema import event_to_row

from test_journal import crashed_with_one_row, journals, read

T0 = 1_795_000_000 * 10**9
NOBODY = 65534


def row_line(cid: str = "f", **change) -> bytes:
    row = event_to_row(ContainerEvent(EventType.ADD, cid, 42, {"process": {"args": ["x"]}}, "/b", T0 + 9, "fake"), "h")
    row.update(change)
    return json.dumps(row).encode() + b"\n"


def forged(root: Path, body: bytes = b"", name: str = ".journal-7-000001.jsonl") -> Path:
    """A journal as someone other than a crashed recorder could leave it."""
    DatasetRecorder(str(root), host="h").close()
    path = root / "host=h" / name
    path.write_bytes(body or row_line("forged"))
    os.chmod(path, 0o600)
    return path


def ids(root: Path) -> list[str]:
    parts = list(root.rglob("*.parquet"))
    return read(root).column("container_id").to_pylist() if parts else []


# ------------------------------------------------------------------------- trust


@pytest.mark.root
@pytest.mark.parametrize("how", ["another user's", "mode 0644", "mode 0660", "a hard link"])
def test_a_journal_the_recorder_did_not_write_alone_is_set_aside_unread(tmp_path, how):
    root = tmp_path / "d"
    journal = forged(root)
    if how == "another user's":
        os.chown(journal, NOBODY, NOBODY)
    elif how.startswith("mode"):
        os.chmod(journal, int(how.split()[1], 8))
    else:
        os.link(journal, tmp_path / "their-name")
    rec = DatasetRecorder(str(root), host="h")
    rec.close()
    aside = journal.with_name(journal.name + ".untrusted")
    assert journals(root) == [aside] and aside.read_bytes() == row_line("forged")  # kept, as it was
    assert rec.recovered == 0 and ids(root) == []
    (note,) = recovery_notes(rec)
    assert note.startswith(f"journal {journal.name} set aside as {aside.name}, unread: not trusted (") and "\n" not in note


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_a_journal_name_on_no_regular_file_is_set_aside_without_opening_it(tmp_path, kind):
    """A FIFO would block a plain open forever; a symlink would read (and flock) its target."""
    root = tmp_path / "d"
    DatasetRecorder(str(root), host="h").close()
    name = root / "host=h" / ".journal-7-000001.jsonl"
    target = tmp_path / "target"
    target.write_bytes(row_line("through-the-link"))
    {"fifo": lambda: os.mkfifo(name), "symlink": lambda: name.symlink_to(target),
     "directory": lambda: name.mkdir()}[kind]()
    rec = DatasetRecorder(str(root), host="h")
    rec.close()
    assert [p.name for p in journals(root)] == [name.name + ".untrusted"] and ids(root) == []
    assert target.read_bytes() == row_line("through-the-link")


def test_an_untrusted_journal_never_replaces_one_set_aside_before(tmp_path):
    root = tmp_path / "d"
    journal = forged(root)
    earlier = journal.with_name(journal.name + ".untrusted")
    earlier.write_bytes(b"kept from before")
    os.chmod(journal, 0o644)
    DatasetRecorder(str(root), host="h").close()
    assert earlier.read_bytes() == b"kept from before"
    assert journal.with_name(journal.name + ".untrusted.1").read_bytes() == row_line("forged")


def test_the_recorders_own_journals_are_0600_whatever_the_umask(tmp_path):
    old = os.umask(0o277)  # would leave 0400
    try:
        root = tmp_path / "d"
        rec = DatasetRecorder(str(root), host="h")
        rec.write(ContainerEvent(EventType.ADD, "a", 1, None, "/b", T0, "fake"))
        rec.flush()
        (journal,) = journals(root)
        assert stat.S_IMODE(journal.stat().st_mode) == 0o600
        rec._journal.close()  # a crash: the next recorder must trust and recover it
    finally:
        os.umask(old)
    again = DatasetRecorder(str(root), host="h")
    again.close()
    assert again.recovered == 1 and again.unrecovered == []


def test_a_leftover_second_name_of_a_journal_is_removed_not_held_against_it(tmp_path):
    """A crash between linking a journal's .new name to its real name and removing
    the .new one leaves the journal with two links: its own, not a forgery."""
    root = tmp_path / "d"
    journal = crashed_with_one_row(root)
    os.link(journal, journal.with_name(journal.name.replace(".jsonl", "-0a1b.jsonl.new")))
    rec = DatasetRecorder(str(root), host="h")
    rec.close()
    assert rec.recovered == 1 and rec.unrecovered == [] and journals(root) == []


# ------------------------------------------------------------- lines: total, bounded


@pytest.mark.parametrize("line", [
    b'{"time": NaN}',
    row_line(time_ns=None).replace(b'"time_ns": null', b'"time_ns": Infinity')[:-1],
    row_line(time_ns=None).replace(b'"time_ns": null', b'"time_ns": -Infinity')[:-1],
    row_line(time_ns=None).replace(b'"time_ns": null', b'"time_ns": 1e999')[:-1],
    row_line(time_ns=None).replace(b'"time_ns": null', b'"time_ns": ' + b"9" * 5000)[:-1],
    row_line(time_ns=2**63)[:-1],  # one past int64
    row_line(container_pid=2**31)[:-1],  # one past int32
    row_line(time_ns=1.5)[:-1],
    row_line(is_sandbox=1)[:-1],
    row_line(exit_code=True)[:-1],
    row_line(container_id=None)[:-1],  # a column that may not be null
    row_line(process_args="sh -c x")[:-1],
    row_line(process_args=["sh", 1])[:-1],
    row_line(annotations=[["k"]])[:-1],
    row_line(annotations=[[None, "v"]])[:-1],
    row_line(annotations={"k": "v"})[:-1],
    row_line(hostname="\ud800")[:-1],  # no UTF-8 for it
    b"[" * 100_000 + b"]" * 100_000,  # deeper than the interpreter's stack
    b"\xff\xfe not UTF-8",
    b"#[1, 2]",  # a counters line that is no object
    b"",
])
def test_a_line_that_is_no_row_the_recorder_writes_is_counted_not_raised(tmp_path, line):
    root = tmp_path / "d"
    journal = crashed_with_one_row(root)
    with open(journal, "ab") as f:
        f.write(line + b"\n")
    rec = DatasetRecorder(str(root), host="h")
    rec.close()
    assert rec.recovered == 1 and ids(root) == ["a"]
    assert rec.unrecovered == [f"journal {journal.name}: 1 event(s) recovered, 1 unreadable line(s) skipped; "
                               f"kept as {journal.name}.recovered"]


def test_a_line_over_the_cap_is_skipped_without_being_held(tmp_path, monkeypatch):
    root = tmp_path / "d"
    journal = crashed_with_one_row(root)
    long = row_line("long", config_json="x" * 3000)
    with open(journal, "ab") as f:
        f.write(long + row_line("after"))
    monkeypatch.setattr("runctrace.store.journal.MAX_LINE", 2048)
    rec = DatasetRecorder(str(root), host="h")
    rec.close()
    assert sorted(ids(root)) == ["a", "after"]
    assert rec.unrecovered == [f"journal {journal.name}: 2 event(s) recovered, 1 unreadable line(s) skipped; "
                               f"kept as {journal.name}.recovered"]


def test_a_journal_over_the_size_cap_is_set_aside_unread(tmp_path, monkeypatch):
    root = tmp_path / "d"
    journal = crashed_with_one_row(root)
    monkeypatch.setattr("runctrace.store.recovery.MAX_JOURNAL", journal.stat().st_size - 1)
    rec = DatasetRecorder(str(root), host="h")
    rec.close()
    assert journals(root) == [journal.with_name(journal.name + ".bad")] and ids(root) == []
    assert "larger than" in rec.unrecovered[0]


def test_a_journal_that_cannot_be_written_now_stays_for_the_next_start(tmp_path, monkeypatch):
    """A full disk at start: the journal is fine, so it is neither renamed nor lost."""
    root = tmp_path / "d"
    journal = crashed_with_one_row(root)

    def full(*args, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(DatasetRecorder, "_write_file", full)
    rec = DatasetRecorder(str(root), host="h")  # starts anyway
    assert rec.unrecovered == [f"journal {journal.name} kept for the next start: no space left on the device"]
    monkeypatch.undo()
    rec.close()
    assert journals(root) == [journal]
    again = DatasetRecorder(str(root), host="h")
    again.close()
    assert again.recovered == 1 and ids(root) == ["a"]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60, deadline=None)
@given(body=st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(
        st.binary(max_size=60),
        st.just(row_line("ok")[:-1]),
        st.builds(lambda key, value: row_line(**{key: value})[:-1],
                  st.sampled_from(["time_ns", "container_pid", "process_args", "annotations", "type", "is_sandbox"]),
                  st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
                            st.lists(st.one_of(st.text(max_size=3), st.integers()), max_size=3))),
    ), max_size=6).map(lambda lines: b"\n".join(lines) + b"\n"),
))
def test_whatever_a_journal_holds_the_recorder_starts(tmp_path_factory, body):
    root = tmp_path_factory.mktemp("d")
    journal = forged(root, body or b"\n")
    rec = DatasetRecorder(str(root), host="h")
    rec.close()
    left = journals(root)
    assert left == [] or [p.name for p in left] in ([journal.name + ".recovered"], [journal.name + ".bad"])
    assert rec.recovered == len(ids(root))
