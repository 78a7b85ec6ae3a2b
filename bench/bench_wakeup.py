#!/usr/bin/env python3
"""What a wake-up costs a thread on this machine, before it does any work.

    .venv/bin/python bench/bench_wakeup.py

A thread that only sleeps (time.sleep) or waits in epoll for an eventfd that
another thread writes, and does nothing else: the CPU time the kernel charges it
(CLOCK_THREAD_CPUTIME_ID) per sleep, by the length of the sleep. On bare metal
this is a few microseconds whatever the length. On a VM whose idle vCPUs halt, the
charge can grow with the time asleep: it is the floor under every figure of CPU
per container in docs/benchmarks-history.md, paid once per wake-up of each recorder thread.

The third column says what the charge is made of: the same 1,024 pages of memory,
resident and touched before every sleep, read again (one byte a page) after it. On
bare metal that costs the same whatever the sleep. Where it grows with the sleep,
the cost of work after a wake-up depends on how much memory it touches, not on
how much it computes: a recorder pays for every page of interpreter, library and
heap its handler reaches. The last table shows it on the recorder's own flush.
"""

from __future__ import annotations

import os
import select
import threading
import time


def sleeping(seconds: float, times: int) -> float:
    t = time.thread_time_ns()
    for _ in range(times):
        time.sleep(seconds)
    return (time.thread_time_ns() - t) / times / 1e3


def woken_from_epoll(seconds: float, times: int) -> float:
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    ep = select.epoll()
    ep.register(efd, select.EPOLLIN)
    charged = []

    def waiter() -> None:
        for _ in range(times):
            t = time.thread_time_ns()
            ep.poll()
            charged.append(time.thread_time_ns() - t)
            os.eventfd_read(efd)

    thread = threading.Thread(target=waiter)
    thread.start()
    for _ in range(times):
        time.sleep(seconds)
        os.eventfd_write(efd, 1)
        while len(charged) < _ + 1:
            time.sleep(0.0005)
    thread.join()
    ep.close()
    os.close(efd)
    return sum(charged) / len(charged) / 1e3


PAGES = 1024


def touching_pages(seconds: float, times: int) -> float:
    """CPU us to read one byte from each of PAGES resident pages, after a sleep."""
    page = os.sysconf("SC_PAGE_SIZE")
    memory = bytearray(PAGES * page)
    for i in range(0, len(memory), page):
        memory[i] = 1  # resident from now on
    charged = 0
    for _ in range(times):
        time.sleep(seconds)
        t = time.thread_time_ns()
        total = 0
        for i in range(0, len(memory), page):
            total += memory[i]
        charged += time.thread_time_ns() - t
    return charged / times / 1e3


def flush_parts(rows: int = 50, times: int = 5) -> None:
    """The recorder's flush, hot and after a 1 s sleep: rows -> Arrow table -> Parquet."""
    import io

    import pyarrow.parquet as pq

    from runctrace.events import ContainerEvent, EventType
    from runctrace.store.parquet import FLUSH_OPTIONS
    from runctrace.store.schema import DATASET_SCHEMA, event_to_row, rows_to_table

    config = {"ociVersion": "1.0.2", "process": {"args": ["true"], "cwd": "/", "env": ["PATH=/bin"]},
              "root": {"path": "rootfs"}, "hostname": "bench", "annotations": {"a": "b"}}
    now = time.time_ns()
    table_rows = [event_to_row(ContainerEvent(EventType.ADD, f"c{i}", 1000 + i, config, "/b", now + i, "bench"),
                               "host") for i in range(rows)]
    for row in table_rows:
        row.pop("host")
    table = rows_to_table(table_rows, DATASET_SCHEMA)
    parts = {
        "rows -> Arrow table": lambda: rows_to_table(table_rows, DATASET_SCHEMA),
        "table -> Parquet": lambda: pq.write_table(table, io.BytesIO(), **FLUSH_OPTIONS),
    }
    print(f"\na flush of {rows} rows (CPU ms, median of {times})    repeated at once    after 1 s asleep")
    for name, part in parts.items():
        hot, cold = [], []
        for _ in range(times):
            part()
            t = time.thread_time_ns()
            part()
            hot.append(time.thread_time_ns() - t)
            time.sleep(1.0)
            t = time.thread_time_ns()
            part()
            cold.append(time.thread_time_ns() - t)
        print(f"  {name:22s}                 {sorted(hot)[times // 2] / 1e6:8.2f}            {sorted(cold)[times // 2] / 1e6:8.2f}",
              flush=True)


def main() -> None:
    print(f"asleep for   time.sleep    epoll, woken by an eventfd    then touch {PAGES} pages   (CPU us)")
    for seconds in (0.001, 0.005, 0.02, 0.1, 0.5, 2.0):
        times = max(3, min(200, int(2 / seconds)))
        print(f"{seconds * 1e3:8.0f} ms  {sleeping(seconds, times):9.1f}    {woken_from_epoll(seconds, times):9.1f}"
              f"                    {touching_pages(seconds, times):9.1f}", flush=True)
    flush_parts()


if __name__ == "__main__":
    main()
