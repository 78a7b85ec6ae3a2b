"""The churn functions on small hand-made recordings with known answers.

Rows come from runctrace.analysis.sample, which builds them with the recorder's own
event_to_row: the frames have exactly the shape of a real recording.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runctrace.analysis import churn, fields
from runctrace.analysis import sample as s

WEB = s.kubernetes("prod", "web-1", "app", "nginx:1.25")


def lives_of(rows):
    return s.frame(rows).pipe(fields.derive_all).pipe(churn.lifetimes)


def by_id(lives):
    return {cid: grp.reset_index(drop=True) for cid, grp in lives.groupby("container_id", observed=True)}


# ---------------------------------------------------------------- pairing


def test_add_and_remove_make_one_lifetime_with_its_length_and_exit():
    lives = lives_of([s.add("a", 10, pid=5), s.remove("a", 12.5, pid=5, exit_code=3)])
    assert len(lives) == 1
    row = lives.iloc[0]
    assert row.status == "ended" and row.start_type == "add"
    assert row.lifetime_s == pytest.approx(2.5)
    assert row.exit_code == 3 and pd.isna(row.signal)
    assert row.start == s.BASE + pd.Timedelta(seconds=10)
    assert row.end == s.BASE + pd.Timedelta(seconds=12.5)


def test_container_still_running_at_the_end_is_kept_open():
    lives = lives_of([s.add("a", 0), s.add("b", 1), s.remove("a", 2)])
    b = by_id(lives)["b"].iloc[0]
    assert b.status == "running"
    assert pd.isna(b.end) and np.isnan(b.lifetime_s)


def test_remove_without_add_is_an_orphan_and_counted():
    lives = lives_of([s.remove("x", 5, exit_code=1), s.add("a", 6), s.remove("a", 7)])
    orphans = churn.orphan_removes(lives)
    assert list(orphans.container_id) == ["x"]
    assert pd.isna(orphans.iloc[0].start) and orphans.iloc[0].exit_code == 1


def test_orphan_keeps_the_lifetime_the_recorder_measured():
    lives = lives_of([s.remove("x", 5, started=-95)])  # added before the data began
    assert lives.iloc[0].status == "orphan"
    assert lives.iloc[0].lifetime_s == pytest.approx(100)
    assert len(churn.complete(lives)) == 0  # its start is not in the data


def test_initial_is_treated_like_add_but_not_counted_as_complete():
    lives = lives_of([s.initial("a", 0), s.remove("a", 30)])
    row = lives.iloc[0]
    assert row.status == "ended" and row.start_type == "initial"
    assert row.lifetime_s == pytest.approx(30)
    assert len(churn.complete(lives)) == 0  # the real start was earlier: a lower bound


def test_initial_after_add_of_the_same_container_is_the_same_lifetime():
    # A recorder restart sees the container again: it must not count twice.
    lives = lives_of([s.add("a", 0, pid=7), s.initial("a", 50, pid=7), s.remove("a", 60, pid=7)])
    assert len(lives) == 1
    assert lives.iloc[0].lifetime_s == pytest.approx(60)


def test_reused_container_id_gives_one_lifetime_per_run():
    # docker restart: the same ID, one add/remove pair per run
    rows = [s.add("a", 0), s.remove("a", 1, exit_code=1), s.add("a", 2), s.remove("a", 5, exit_code=0)]
    lives = lives_of(rows)
    assert sorted(lives.lifetime_s) == pytest.approx([1, 3])
    assert sorted(lives.exit_code.astype(int)) == [0, 1]


def test_a_second_add_without_remove_marks_the_first_lost():
    lives = by_id(lives_of([s.add("a", 0), s.add("a", 10), s.remove("a", 11)]))["a"].sort_values("start")
    assert list(lives.status) == ["lost", "ended"]
    assert lives.iloc[0].end == s.BASE + pd.Timedelta(seconds=10)  # the latest it can have ended
    assert np.isnan(lives.iloc[0].lifetime_s)


def test_same_id_on_two_hosts_is_two_containers():
    rows = [s.add("a", 0, host="n1"), s.add("a", 1, host="n2"), s.remove("a", 2, host="n1"), s.remove("a", 4, host="n2")]
    lives = lives_of(rows)
    assert dict(zip(lives.host.astype(str), lives.lifetime_s)) == {"n1": 2.0, "n2": 3.0}


def test_start_and_remove_at_the_same_instant_pair():
    lives = lives_of([s.remove("a", 1), s.add("a", 1)])  # written out of order, same time
    assert list(lives.status) == ["ended"] and lives.iloc[0].lifetime_s == 0


def test_events_out_of_time_order_are_sorted_before_pairing():
    lives = lives_of([s.remove("a", 5), s.add("b", 1), s.add("a", 2), s.remove("b", 3)])
    assert dict(zip(lives.container_id, lives.lifetime_s)) == {"a": 3.0, "b": 2.0}


def test_attributes_missing_at_start_are_taken_from_the_remove():
    # the spec was unreadable at start (no annotations), readable at remove
    rows = [s.add("a", 0, runtime_root=None, manager=None), s.remove("a", 1, annotations=WEB)]
    row = lives_of(rows).iloc[0]
    assert row.pod_name == "web-1" and row.image_name == "nginx:1.25"


def test_no_events_gives_an_empty_lifetime_frame():
    lives = s.frame([]).pipe(fields.derive_all).pipe(churn.lifetimes)
    assert lives.empty and set(churn.LIFETIME_COLUMNS) <= set(lives.columns)


# A reference pairing, one event at a time, to compare the vectorised one against.
def reference_lifetimes(rows):
    out, open_ = [], {}
    for r in sorted(rows, key=lambda r: (r["host"], r["container_id"], r["time_ns"], r["type"] == "remove")):
        key = (r["host"], r["container_id"])
        if r["type"] in ("add", "initial"):
            if key in open_:
                prev = open_[key]
                if r["type"] == "initial" and prev["container_pid"] == r["container_pid"]:
                    continue
                out.append((key, prev["time_ns"], "lost"))
            open_[key] = r
        else:
            if key in open_:
                out.append((key, open_.pop(key)["time_ns"], "ended"))
            else:
                out.append((key, None, "orphan"))
    out += [(key, r["time_ns"], "running") for key, r in open_.items()]
    return sorted(out, key=repr)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "initial", "remove"]), st.sampled_from("abc"),
                          st.sampled_from(["n1", "n2"]), st.integers(0, 20)), max_size=30))
def test_vectorised_pairing_matches_a_one_event_at_a_time_reference(events):
    rows = [s.event(kind, cid, t, host=host, pid=1) for kind, cid, host, t in events]
    lives = lives_of(rows)
    got = [
        ((h, c), None if pd.isna(st_) else int(st_.value), status)
        for h, c, st_, status in zip(lives.host.astype(str), lives.container_id, lives.start, lives.status.astype(str))
    ]
    assert sorted(got, key=repr) == reference_lifetimes(rows)
    n_removes = sum(1 for e in events if e[0] == "remove")
    assert int(lives.status.isin(["ended", "orphan"]).sum()) == n_removes


# ---------------------------------------------------------------- summaries


def hundred_lifetimes():
    rows = []
    for i in range(1, 101):  # lifetimes 1 s .. 100 s
        rows += [s.add(f"c{i}", i * 200), s.remove(f"c{i}", i * 200 + i, exit_code=0 if i % 10 else 1)]
    return lives_of(rows)


def test_lifetime_quantiles_have_known_values():
    q = churn.lifetime_quantiles(hundred_lifetimes()).iloc[0]
    assert q.containers == 100
    assert q.p50 == pytest.approx(50.5)
    assert q.p90 == pytest.approx(np.quantile(np.arange(1, 101), 0.9))
    assert q.p99 == pytest.approx(np.quantile(np.arange(1, 101), 0.99))
    assert q["max"] == 100


def test_lifetime_quantiles_by_group():
    rows = [s.add("a", 0, host="n1"), s.remove("a", 2, host="n1"), s.add("b", 0, host="n2"), s.remove("b", 8, host="n2")]
    q = churn.lifetime_quantiles(lives_of(rows), by=["host"]).set_index("host")
    assert q.loc["n1", "p50"] == 2 and q.loc["n2", "max"] == 8


def test_short_lived_uses_complete_lifetimes_under_the_threshold():
    lives = hundred_lifetimes()
    assert len(churn.short_lived(lives, 10)) == 9  # 1..9 s
    assert len(churn.short_lived(lives, 0.5)) == 0


def test_exit_summary_counts_codes_and_signals():
    rows = [s.add("a", 0), s.remove("a", 1, exit_code=0), s.add("b", 0), s.remove("b", 1, signal=9),
            s.add("c", 0), s.remove("c", 1, exit_code=0), s.add("d", 0), s.remove("d", 1)]
    ex = churn.exit_summary(lives_of(rows)).set_index("outcome")
    assert ex.loc["exit 0", "containers"] == 2
    assert ex.loc["signal 9 (SIGKILL)", "containers"] == 1
    assert ex.loc["unknown", "containers"] == 1
    assert ex["share"].sum() == pytest.approx(1.0)


def test_churn_rates_count_adds_and_removes_per_interval():
    rows = [s.add("a", 1), s.add("b", 2), s.remove("a", 11), s.initial("c", 3), s.remove("c", 25)]
    rates = churn.churn_rates(lives_of(rows), "10s")
    assert list(rates["starts"]) == [2, 0, 0]  # the initial is not a start
    assert list(rates["stops"]) == [0, 1, 1]
    assert rates.index[0] == s.BASE


def test_concurrency_steps_with_starts_and_ends():
    rows = [s.remove("o", 5),                      # running since before the data
            s.add("a", 1), s.add("b", 2), s.remove("a", 3), s.remove("b", 15), s.add("c", 16)]
    conc = churn.concurrency(lives_of(rows), "10s")
    first, second = conc.iloc[0], conc.iloc[1]
    assert first.running_max == 3  # o, a, b at t=2
    assert first.running_end == 1  # b (o ended at 5, a at 3)
    assert second.running_max == 1 and second.running_end == 1  # b ends at 15, c starts at 16


def test_top_churners_by_each_grouping():
    k = s.kubernetes("batch", "job-1", "work", "busybox:1")
    rows = []
    for i in range(4):
        rows += [s.add(f"k{i}", i, annotations=k, host="n1"), s.remove(f"k{i}", i + 0.5, annotations=k, host="n1", exit_code=1)]
    rows += [s.add("d", 0, runtime_root="/run/docker/runtime-runc/moby", host="n2")]
    lives = lives_of(rows)
    image = churn.top_churners(lives, "image").set_index("group")
    assert image.loc["busybox:1", "starts"] == 4 and image.loc["busybox:1", "failed"] == 4
    assert image.loc["(none)", "running"] == 1
    assert churn.top_churners(lives, "pod").iloc[0].group == "batch/job-1"
    assert churn.top_churners(lives, "namespace").iloc[0].group == "batch"
    assert set(churn.top_churners(lives, "manager").group) == {"containerd", "docker"}
    assert churn.top_churners(lives, "host", n=1).group.tolist() == ["n1"]
    with pytest.raises(ValueError):
        churn.top_churners(lives, "colour")


# ---------------------------------------------------------------- restart loops


def crash_loop(starts, *, ann=WEB, host="n1", life=2.0, exit_code=1, **kw):
    rows = []
    for i, t in enumerate(starts):
        rows += [s.add(f"{host}-r{i}", t, annotations=ann, host=host, **kw),
                 s.remove(f"{host}-r{i}", t + life, annotations=ann, host=host, exit_code=exit_code, **kw)]
    return rows


def test_restart_loop_found_at_exactly_the_threshold():
    rows = crash_loop([0, 10, 30, 70, 150, 310])  # kubelet back-off: 6 starts = 5 restarts
    loops = churn.restart_loops(lives_of(rows), threshold=5, window="10m")
    assert len(loops) == 1
    loop = loops.iloc[0]
    assert loop.logical_container == "prod/web-1/app" and loop.kind == "kubernetes"
    assert loop.restarts == 5 and loop.max_restarts_in_window == 5
    assert loop.p50_lifetime_s == pytest.approx(2.0)
    assert loop.last_exit_code == 1 and loop.last_outcome == "exit 1"
    assert loop.image_name == "nginx:1.25"
    assert churn.restart_loops(lives_of(rows), threshold=6, window="10m").empty


def test_restart_loop_needs_the_restarts_within_the_window():
    rows = crash_loop([0, 100, 200, 300, 400, 500])  # 5 restarts over 500 s
    lives = lives_of(rows)
    assert len(churn.restart_loops(lives, threshold=5, window="500s")) == 1
    assert churn.restart_loops(lives, threshold=5, window="499s").empty
    found = churn.restart_loops(lives, threshold=3, window="5m").iloc[0]
    assert found.max_restarts_in_window == 3 and found.restarts == 5


def test_restart_loop_without_kubernetes_uses_manager_hostname_and_command():
    rows = []
    for i in range(6):
        kw = dict(runtime_root="/run/runc", hostname="runc", args=["sh", "-c", "exit 2"])
        rows += [s.add(f"c{i}", i * 5, **kw), s.remove(f"c{i}", i * 5 + 1, signal=9, **kw)]
    rows += [s.add("other", 3, runtime_root="/run/runc", hostname="runc", args=["sleep", "1"])]  # not the same
    loop = churn.restart_loops(lives_of(rows), threshold=5, window="1m").iloc[0]
    assert loop.kind == "host" and loop.restarts == 5
    assert loop.manager == "by-hand" and loop.command == "sh -c exit 2"
    assert loop.last_outcome == "signal 9 (SIGKILL)"


def test_different_pods_are_not_one_loop():
    rows = []
    for i in range(6):
        rows += crash_loop([i * 10], ann=s.kubernetes("prod", f"web-{i}", "app", "nginx:1.25"), host=f"n{i}")
    assert churn.restart_loops(lives_of(rows), threshold=2, window="1h").empty


def test_loop_that_is_running_at_the_end_says_so():
    rows = crash_loop([0, 10, 20, 30, 40, 50])[:-1]  # the last run has not ended
    loop = churn.restart_loops(lives_of(rows), threshold=5, window="1h").iloc[0]
    assert loop.last_status == "running" and loop.last_outcome == "exit 1"


# ---------------------------------------------------------------- derived fields


@pytest.mark.parametrize("root, annotated, expected", [
    ("/run/containerd/runc/k8s.io", None, "containerd"),
    ("/run/docker/runtime-runc/moby", None, "docker"),
    ("/run/crio/runc", None, "cri-o"),
    ("/run/runc", None, "by-hand"),
    (None, None, "by-hand"),
    ("/run/runc", "cri-o", "cri-o"),
])
def test_manager_from_root(root, annotated, expected):
    assert fields.manager_from_root(root, annotated) == expected


def test_version_1_rows_get_kubernetes_fields_and_manager_from_annotations():
    ev = s.frame([s.add("a", 0, annotations=s.kubernetes("ns", "p", "c", "img:1", runtime="cri-o"), runtime_root="/run/runc",
                        manager=None),
                  s.add("b", 0, annotations=s.kubernetes("ns", "p"), manager=None)])
    v1 = ev.drop(columns=list(fields.KUBERNETES_COLUMNS) + ["manager"])  # what a version-1 file holds
    out = fields.derive_all(v1)
    assert list(out.pod_namespace) == ["ns", "ns"]
    assert out.image_name.iloc[0] == "img:1" and pd.isna(out.image_name.iloc[1])
    assert list(out.is_sandbox) == [False, True]
    assert list(out.manager) == ["cri-o", "containerd"]  # CRI-O on runc's default root


def test_annotation_arrays_on_sliced_and_null_maps():
    m = pa.array([[("io.kubernetes.pod.name", "p1"), ("io.container.manager", "libpod")], None,
                  [("io.kubernetes.cri.sandbox-name", "c"), ("io.kubernetes.cri.container-type", "sandbox")], []],
                 type=fields.MAP_TYPE)
    whole = fields.annotation_arrays(m)
    assert whole["pod_name"].to_pylist() == ["p1", None, "c", None]
    assert whole["is_sandbox"].to_pylist() == [None, None, True, None]
    assert whole[fields.ANNOTATED_MANAGER].to_pylist() == ["conmon", None, None, None]
    assert fields.annotation_arrays(m.slice(1, 2))["pod_name"].to_pylist() == [None, "c"]
    assert fields.annotation_arrays(pa.nulls(2, fields.MAP_TYPE))["pod_name"].to_pylist() == [None, None]


def test_command_joins_process_args():
    ev = fields.with_command(s.frame([s.add("a", 0, args=["nginx", "-g", "daemon off;"])]))
    assert ev.command.iloc[0] == "nginx -g daemon off;"


def test_parse_duration():
    assert churn.parse_duration("90s") == pd.Timedelta(seconds=90)
    assert churn.parse_duration("5m") == pd.Timedelta(minutes=5)
    assert churn.parse_duration("2d") == pd.Timedelta(days=2)
    assert churn.parse_duration(30) == pd.Timedelta(seconds=30)
    assert churn.parse_duration("1h30min") == pd.Timedelta(minutes=90)
    with pytest.raises(ValueError):
        churn.parse_duration("soon")
