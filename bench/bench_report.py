"""Benchmark ``runctrace report``'s aggregates against DuckDB on the same files.

Generates (or reuses) a SYNTHETIC dataset with ``bench/synth.py`` -- by default
100 hosts x 100k events = 10 million events -- then, each in a fresh subprocess so
peak memory is measured per engine:

1. **runctrace**: ``open_recordings(DIR).events()`` + ``build_report()`` -- what the
   CLI does minus printing: load + derived columns, pairing into lifetimes,
   starts/stops per interval, concurrency, lifetime quantiles, short-lived count,
   exits, top churners by image, restart loops (plus the histogram and summary).
2. **DuckDB**: the same aggregates in SQL over the same Parquet files (pairing with
   window functions, the concurrency as a running sum, restart loops as a RANGE
   window), all threads. Both read the recorder's schema-v2 columns (manager,
   pod_namespace, pod_name, container_name, image_name) and take ``host`` from the
   ``host=<name>`` directories.

Prints wall time, peak RSS and, for runctrace, a per-phase breakdown and the
in-memory size of the loaded events; then the ratio runctrace / DuckDB (target
<= 1.5).

    python bench/bench_report.py                                   # 100 x 100k (10M events)
    python bench/bench_report.py --hosts 10 --events-per-host 50000   # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
INTERVAL_S = 900  # 15 min: what --interval auto picks for a day of data
SHORT_S = 10.0
THRESHOLD = 5
WINDOW_S = 3600


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ---------------------------------------------------------------- workers


def run_runctrace(data: str) -> dict:
    import pandas as pd

    from runctrace.analysis import churn, fields, io
    from runctrace.analysis.report import ReportOptions, build_report

    phases = {}
    t0 = time.perf_counter()
    rec = io.open_recordings(data)
    events = rec.events(sort=False)
    phases["load"] = time.perf_counter() - t0
    mem = int(events.memory_usage(deep=True).sum())
    # The report, timed as one (this is the figure compared with DuckDB) ...
    t1 = time.perf_counter()
    opts = ReportOptions(interval=pd.Timedelta(seconds=INTERVAL_S), by="image", short_lived_s=SHORT_S,
                         restart_threshold=THRESHOLD, window=f"{WINDOW_S}s")
    report = build_report(events, opts, files=rec.files, paths=[data], notes=rec.notes, counters=rec.recorder_counters())
    phases["report"] = time.perf_counter() - t1
    total = time.perf_counter() - t0
    peak = _peak_rss_mib()
    # ... then its parts again, for the breakdown (not part of the total).
    t = time.perf_counter()
    ev = fields.derive_all(events)
    phases["  derive (manager)"] = time.perf_counter() - t
    t = time.perf_counter()
    lives = churn.lifetimes(ev)
    phases["  lifetimes (pairing)"] = time.perf_counter() - t
    for name, fn in [
        ("  churn_rates", lambda: churn.churn_rates(lives, INTERVAL_S)),
        ("  concurrency", lambda: churn.concurrency(lives, INTERVAL_S)),
        ("  lifetime_quantiles", lambda: churn.lifetime_quantiles(lives)),
        ("  exit_summary", lambda: churn.exit_summary(lives)),
        ("  top_churners", lambda: churn.top_churners(lives, "image")),
        ("  restart_loops", lambda: churn.restart_loops(lives, THRESHOLD, f"{WINDOW_S}s")),
    ]:
        t = time.perf_counter()
        fn()
        phases[name] = time.perf_counter() - t
    return {
        "engine": "runctrace", "seconds": total, "peak_rss_mib": peak, "events": len(events),
        "events_mib": mem / 2**20, "phases": phases,
        "check": {
            "containers": report.summary["containers"], "starts": report.summary["starts"],
            "stops": report.summary["stops"], "p50": report.lifetime["p50"], "p99": report.lifetime["p99"],
            "peak_running": report.summary["peak_running"], "short_lived": report.summary["short_lived"],
            "restart_loops": report.summary["restart_loops"],
        },
    }


DUCKDB_SQL = """
CREATE TEMP TABLE lv AS
WITH ev AS (
    -- schema v2: the recorder's typed columns; host from the host=<name> directory
    SELECT time_ns, type, container_id, host, exit_code, signal, hostname, manager,
           array_to_string(process_args, ' ') AS command,
           pod_namespace AS namespace, pod_name AS pod, container_name, image_name AS image
    FROM read_parquet('{files}', hive_partitioning = true)
    WHERE type IN ('add', 'initial', 'remove')
), s AS (
    SELECT *,
        lag(type) OVER w AS prev_type, lead(type) OVER w AS next_type, lead(time_ns) OVER w AS next_t,
        lead(exit_code) OVER w AS next_exit, lead(signal) OVER w AS next_sig
    FROM ev
    WINDOW w AS (PARTITION BY host, container_id ORDER BY time_ns, (type = 'remove'))
)
SELECT host, container_id, namespace, pod, container_name, image, manager, hostname, command,
       time_ns AS start_ns,
       CASE WHEN next_type IS NOT NULL THEN next_t END AS end_ns,
       CASE WHEN next_type = 'remove' THEN 'ended' WHEN next_type IS NULL THEN 'running' ELSE 'lost' END AS status,
       type AS start_type,
       CASE WHEN next_type = 'remove' THEN next_exit END AS exit_code,
       CASE WHEN next_type = 'remove' THEN next_sig END AS signal,
       CASE WHEN next_type = 'remove' THEN (next_t - time_ns) / 1e9 END AS lifetime_s
FROM s WHERE type <> 'remove'
UNION ALL
SELECT host, container_id, namespace, pod, container_name, image, manager, hostname, command,
       NULL, time_ns, 'orphan', NULL, exit_code, signal, NULL
FROM s WHERE type = 'remove' AND (prev_type IS NULL OR prev_type = 'remove');
"""

DUCKDB_AGGREGATES = {
    "rates": """
        SELECT coalesce(a.b, r.b) AS b, coalesce(a.n, 0) AS starts, coalesce(r.n, 0) AS stops FROM
        (SELECT start_ns // {step} AS b, count(*) AS n FROM lv WHERE start_type = 'add' GROUP BY 1) a
        FULL OUTER JOIN
        (SELECT end_ns // {step} AS b, count(*) AS n FROM lv WHERE status IN ('ended', 'orphan') GROUP BY 1) r
        ON a.b = r.b ORDER BY 1""",
    "concurrency": """
        WITH o AS (SELECT min(least(coalesce(start_ns, end_ns), coalesce(end_ns, start_ns))) AS origin FROM lv),
        d AS (SELECT coalesce(start_ns, (SELECT origin FROM o)) AS t, 1 AS d FROM lv
              UNION ALL SELECT end_ns, -1 FROM lv WHERE end_ns IS NOT NULL),
        r AS (SELECT t, sum(d) OVER (ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS running FROM d)
        SELECT t // {step} AS b, max(running), min(running), arg_max(running, t) FROM r GROUP BY 1 ORDER BY 1""",
    "quantiles": """
        SELECT count(*), quantile_cont(lifetime_s, [0.5, 0.9, 0.99]), max(lifetime_s),
               count(*) FILTER (WHERE lifetime_s < {short})
        FROM lv WHERE status = 'ended' AND start_type = 'add'""",
    "exits": "SELECT exit_code, signal, count(*) FROM lv WHERE status IN ('ended', 'orphan') GROUP BY ALL ORDER BY 3 DESC",
    "top": """
        SELECT image, count(*) AS containers, count(*) FILTER (WHERE start_type = 'add') AS starts,
               count(*) FILTER (WHERE status IN ('ended', 'orphan')) AS stops,
               count(*) FILTER (WHERE status = 'running') AS running,
               count(*) FILTER (WHERE status = 'ended' AND start_type = 'add' AND lifetime_s < {short}) AS short_lived,
               count(*) FILTER (WHERE status IN ('ended', 'orphan') AND (coalesce(exit_code, 0) <> 0 OR signal IS NOT NULL)) AS failed,
               median(lifetime_s) FILTER (WHERE status = 'ended' AND start_type = 'add') AS p50
        FROM lv GROUP BY image ORDER BY starts + stops DESC LIMIT 10""",
    "restart_loops": """
        WITH st AS (
            SELECT (namespace IS NOT NULL AND pod IS NOT NULL) AS k8s,
                   namespace, pod, container_name, host AS h,
                   CASE WHEN namespace IS NULL OR pod IS NULL THEN manager END AS m,
                   CASE WHEN namespace IS NULL OR pod IS NULL THEN hostname END AS hn,
                   CASE WHEN namespace IS NULL OR pod IS NULL THEN command END AS c,
                   start_ns, lifetime_s, status, start_type, exit_code, signal
            FROM lv WHERE start_type IS NOT NULL
        ), w AS (
            SELECT *, count(*) OVER (PARTITION BY k8s, namespace, pod, container_name, h, m, hn, c
                                     ORDER BY start_ns RANGE BETWEEN CURRENT ROW AND {window_ns} FOLLOWING) AS in_window
            FROM st
        )
        SELECT k8s, namespace, pod, container_name, h, m, hn, c,
               count(*) - 1 AS restarts, max(in_window) - 1 AS max_in_window,
               median(lifetime_s) FILTER (WHERE status = 'ended' AND start_type = 'add') AS p50,
               arg_max(exit_code, start_ns) FILTER (WHERE status IN ('ended', 'orphan')) AS last_exit,
               arg_max(signal, start_ns) FILTER (WHERE status IN ('ended', 'orphan')) AS last_signal
        FROM w GROUP BY ALL HAVING max(in_window) - 1 >= {threshold} ORDER BY max_in_window DESC""",
}


def run_duckdb(data: str) -> dict:
    import duckdb

    con = duckdb.connect()
    files = os.path.join(data, "**", "*.parquet")
    params = {"step": INTERVAL_S * 10**9, "short": SHORT_S, "window_ns": WINDOW_S * 10**9, "threshold": THRESHOLD}
    phases = {}
    t0 = time.perf_counter()
    con.execute(DUCKDB_SQL.format(files=files))
    phases["load + pair (lifetimes)"] = time.perf_counter() - t0
    results = {}
    for name, sql in DUCKDB_AGGREGATES.items():
        t = time.perf_counter()
        results[name] = con.execute(sql.format(**params)).fetchall()
        phases["  " + name] = time.perf_counter() - t
    total = time.perf_counter() - t0
    n_events = con.execute(f"SELECT count(*) FROM read_parquet('{files}', hive_partitioning = true)").fetchone()[0]
    q = results["quantiles"][0]
    return {
        "engine": "duckdb", "seconds": total, "peak_rss_mib": _peak_rss_mib(), "events": n_events,
        "threads": con.execute("SELECT current_setting('threads')").fetchone()[0], "phases": phases,
        "check": {
            "containers": con.execute("SELECT count(*) FROM lv").fetchone()[0],
            "p50": q[1][0], "p99": q[1][2], "short_lived": q[3],
            "peak_running": max(r[1] for r in results["concurrency"]),
            "restart_loops": len(results["restart_loops"]),
        },
    }


# ---------------------------------------------------------------- driver


def _worker(engine: str, data: str) -> dict:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", engine, "--data", data],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{engine} worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", type=int, default=100)
    p.add_argument("--events-per-host", type=int, default=100_000)
    p.add_argument("--data", help="dataset directory (generated there if empty; default: a temp dir, removed after)")
    p.add_argument("--runs", type=int, default=1, help="runs per engine; the best time is kept")
    p.add_argument("--worker", choices=["runctrace", "duckdb"], help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        result = run_runctrace(a.data) if a.worker == "runctrace" else run_duckdb(a.data)
        print(json.dumps(result, default=str))
        return

    sys.path.insert(0, HERE)
    import synth

    tmp = None
    data = a.data
    if data is None:
        tmp = tempfile.TemporaryDirectory(prefix="runctrace-bench-")
        data = tmp.name
    try:
        if not any(f.endswith(".parquet") for _, _, fs in os.walk(data) for f in fs):
            t = time.perf_counter()
            print(f"generating SYNTHETIC data: {a.hosts} hosts x {a.events_per_host:,} events in {data}", flush=True)
            synth.generate(data, a.hosts, a.events_per_host, quiet=False)
            print(f"  generated in {time.perf_counter() - t:.1f}s", flush=True)
        size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(data) for f in fs)
        print(f"dataset: {data} ({size / 2**20:.0f} MiB of Parquet on disk)\n", flush=True)
        best = {}
        for engine in ("runctrace", "duckdb"):
            for _ in range(a.runs):
                r = _worker(engine, data)
                if engine not in best or r["seconds"] < best[engine]["seconds"]:
                    best[engine] = r
        ours, duck = best["runctrace"], best["duckdb"]
        for r in (ours, duck):
            extra = f", {r['threads']} threads" if "threads" in r else f", events in memory {r['events_mib']:.0f} MiB"
            print(f"{r['engine']:<10} {r['events']:>12,} events  {r['seconds']:7.2f} s  peak RSS {r['peak_rss_mib']:7.0f} MiB{extra}")
            for name, secs in r["phases"].items():
                print(f"    {name:<28} {secs:7.2f} s")
            print(f"    check: {r['check']}")
        print(f"\nratio runctrace / duckdb: {ours['seconds'] / duck['seconds']:.2f}x  (target <= 1.5x)")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
