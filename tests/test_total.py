"""Handling one event is total: a failure injected at each stage (resolving,
enriching, handling a kernel message, writing, printing) becomes an ``error`` on
that event or a counter, and the recorder goes on to the next container."""

from __future__ import annotations

import time

import pytest

from conftest import runc
from runctrace.runc import tracker as resolve
from runctrace.store import schema
from runctrace.events import ContainerEvent, EventType
from runctrace.backends.fake import FakeNotifier
from runctrace.session import Session


def _event(cid: str, kind: EventType = EventType.ADD, config=None) -> ContainerEvent:
    return ContainerEvent(kind, cid, 42, config, "/b", time.time_ns(), "fake")


# ------------------------------------------------------------- no root needed


def test_a_spec_that_cannot_be_serialised_still_gives_its_row(monkeypatch):
    def broken(event, keep_env):
        raise RecursionError("injected")

    monkeypatch.setattr(schema, "_spec_columns", broken)
    row = schema.event_to_row(_event("c1", config={"process": {"args": ["x"]}}), "h")
    assert row["container_id"] == "c1" and row["config_json"] is None
    assert "recording the spec failed: RecursionError('injected')" in row["error"]
    schema.rows_to_table([row])  # and it is a valid row of the schema


def test_printing_or_writing_one_event_fails_and_the_session_goes_on():
    notifier = FakeNotifier()
    seen = []

    def on_event(event):
        if event.container_id == "bad":
            raise ValueError("injected")
        seen.append(event.container_id)

    for cid in ("a", "bad", "b"):
        notifier.push(_event(cid))
    session = Session(notifier, on_event, duration=0.3)
    session.run()
    assert seen == ["a", "b"] and session.failed == 1
    assert "1 failed" in session.status_text()


def test_a_tracker_entry_point_that_fails_is_counted_not_raised(monkeypatch):
    from runctrace.backends.base import Stats

    stats, emitted = Stats(), []
    tracker = resolve.Tracker("fake", emitted.append, stats, lambda *a: None)
    try:
        monkeypatch.setattr(resolve, "parse_call", lambda *a: 1 / 0)
        assert tracker.runc_started(1, ["runc", "run", "x"], "/", "runc") is None
        assert stats.errors == 1 and emitted == []
    finally:
        tracker.close()


# ------------------------------------------------ real runc, on both backends


@pytest.mark.root
@pytest.mark.parametrize("stage,needle", [
    ("resolve", "reading config.json failed: RuntimeError('injected')"),
    ("enrich", "enriching failed: RuntimeError('injected')"),
])
def test_a_stage_that_fails_gives_the_event_an_error(monkeypatch, log, bundles, container_ids, stage, needle):
    def broken(*args, **kwargs):
        raise RuntimeError("injected")

    if stage == "resolve":
        monkeypatch.setattr(resolve, "load_config", broken)
    else:
        monkeypatch.setattr(resolve.Container, "enrich", broken)
    cid = container_ids()
    runc("run", cid, cwd=bundles.make(["true"]))
    log.wait_removed(cid)
    log.settle()
    add, remove = log.assert_one_lifecycle(cid)
    assert needle in add.error and remove.exit_code == 0
    assert log.notifier.stats.errors >= 1
    monkeypatch.undo()
    cid2 = container_ids()  # and the next container is whole
    runc("run", cid2, cwd=bundles.make(["true"]))
    log.wait_removed(cid2)
    add2, _ = log.assert_one_lifecycle(cid2)
    assert add2.error is None and add2.container_config["process"]["args"] == ["true"]


@pytest.mark.root
@pytest.mark.parametrize("method,first", [
    ("_on_exit", "run"),  # a connector message: the first container's messages include the failed one
    ("runc_exec_seen", "state"),  # a fanotify event: the first runc's exec is the failed one
])
def test_a_kernel_message_that_fails_is_counted_and_the_loop_goes_on(monkeypatch, bundles, container_ids,
                                                                      method, first):
    from conftest import EventLog
    from runctrace.backends.fanotify import FanotifyNotifier
    from runctrace.backends.fanotify.correlator import Correlator

    real = getattr(Correlator, method)
    calls = []

    def fails_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Correlator, method, fails_once)
    notifier = FanotifyNotifier()
    log = EventLog(notifier)
    try:
        if first == "run":
            runc("run", container_ids(), cwd=bundles.make(["true"]))
        else:
            runc("state", container_ids("none"), check=False)
        cid = container_ids()
        runc("run", cid, cwd=bundles.make(["true"]))
        log.wait_removed(cid)
        log.assert_one_lifecycle(cid)
        assert notifier.stats.errors == 1 and not notifier.finished
    finally:
        notifier.close()
