"""The restart-loop window count (churn.densest_windows), on plain arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd

from runctrace.analysis import churn

S = 1_000_000_000  # one second in ns


def test_one_group():
    # Starts at 0, 10, 20, 100, 105, 110, 115 s; a 15 s window holds at most
    # 4 of them (100..115), and the earliest dense window (0..20) holds 3.
    times = np.array([0, 10, 20, 100, 105, 110, 115]) * S
    w = churn.densest_windows(times, [7], pd.Timedelta(seconds=15))
    assert w.count.tolist() == [4]
    assert w.first.tolist() == [3]
    assert w.last.tolist() == [6]


def test_window_end_is_inclusive_and_ties_take_the_earliest():
    times = np.array([0, 10, 30, 40]) * S
    w = churn.densest_windows(times, [4], pd.Timedelta(seconds=10))
    assert w.count.tolist() == [2]  # 0 and 10: a start exactly one window later is in it
    assert (w.first.tolist(), w.last.tolist()) == ([0], [1])  # 30..40 holds as many, later


def test_groups_do_not_reach_into_each_other():
    # The second group's times are just after the first's: laid end to end they
    # would fall in one window; per group each window holds its own starts only.
    times = np.array([0, 1, 2, 3, 4, 5]) * S
    w = churn.densest_windows(times, [2, 3, 1], pd.Timedelta(hours=1))
    assert w.count.tolist() == [2, 3, 1]
    assert w.first.tolist() == [0, 2, 5]
    assert w.last.tolist() == [1, 4, 5]


def test_millisecond_precision_and_zero_window():
    times = np.array([0, 999_999, 1_000_000, 1_000_001])  # ns: 0 ms, 0 ms, 1 ms, 1 ms
    w = churn.densest_windows(times, [4], pd.Timedelta(0))
    assert w.count.tolist() == [2]
    assert (w.first.tolist(), w.last.tolist()) == ([0], [1])


def test_no_groups():
    w = churn.densest_windows(np.zeros(0, np.int64), np.zeros(0, np.int64), pd.Timedelta(hours=1))
    assert len(w.count) == len(w.first) == len(w.last) == 0


def test_agrees_with_counting_each_window():
    rng = np.random.default_rng(23)
    sizes = rng.integers(1, 30, size=40)
    times = np.concatenate([np.sort(rng.integers(0, 600, size=n)) * S for n in sizes])
    window = pd.Timedelta(seconds=45)
    w = churn.densest_windows(times, sizes, window)
    at = 0
    for g, n in enumerate(sizes):
        t = times[at:at + n]
        held = [int(np.sum((t >= x) & (t <= x + window.value))) for x in t]
        best = int(np.argmax(held))
        assert w.count[g] == held[best]
        assert w.first[g] == at + best
        assert times[w.last[g]] == t[t <= t[best] + window.value].max()
        at += n
