"""Pairing (analysis.pairing.pair) on its own: which event starts and ends each lifetime."""

from __future__ import annotations

import pandas as pd

from runctrace.analysis import pairing


def events(rows):
    return pd.DataFrame(rows, columns=["time_ns", "type", "host", "container_id", "container_pid"])


def test_pair_positions_and_statuses():
    ev = events([
        (1, "add", "h", "a", 10),      # 0: a ends at 3
        (2, "add", "h", "b", 11),      # 1: b is started again at 4: lost
        (3, "remove", "h", "a", 10),   # 2
        (4, "add", "h", "b", 12),      # 3: still running
        (5, "remove", "h", "c", 13),   # 4: orphan
        (6, "initial", "h", "a", 14),  # 5: a new lifetime of a reused ID, running
    ])
    p = pairing.pair(ev)
    got = {
        (int(s), int(e)): pairing.STATUSES[st]
        for s, e, st in zip(p.start_event, p.end_event, p.status)
    }
    assert got == {(0, 2): "ended", (1, -1): "lost", (3, -1): "running", (5, -1): "running", (-1, 4): "orphan"}
    assert p.orphans == 1
    assert p.end_ns[list(p.start_event).index(1)] == 4  # a lost lifetime ends by the next start


def test_initial_after_a_start_is_the_same_container():
    ev = events([(1, "add", "h", "a", 10), (2, "initial", "h", "a", 10), (3, "remove", "h", "a", 10)])
    lives = pairing.lifetimes(ev)
    assert lives["status"].tolist() == ["ended"]
    assert lives["start_type"].tolist() == ["add"]


def test_nothing_to_pair():
    assert pairing.pair(events([(1, "error", "h", "a", 10)])) is None
    assert list(pairing.lifetimes(events([]))[pairing.LIFETIME_COLUMNS].columns) == pairing.LIFETIME_COLUMNS
