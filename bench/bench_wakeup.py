#!/usr/bin/env python3
"""What a wake-up costs a thread on this machine, before it does any work.

    .venv/bin/python bench/bench_wakeup.py

A thread that only sleeps (time.sleep) or waits in epoll for an eventfd that
another thread writes, and does nothing else: the CPU time the kernel charges it
(CLOCK_THREAD_CPUTIME_ID) per sleep, by the length of the sleep. On bare metal
this is a few microseconds whatever the length. On a VM whose idle vCPUs halt, the
charge can grow with the time asleep: it is the floor under every figure of CPU
per container in BENCHMARKS.md, paid once per wake-up of each recorder thread.
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


def main() -> None:
    print("asleep for   time.sleep    epoll, woken by an eventfd   (CPU us charged per wake-up)")
    for seconds in (0.001, 0.005, 0.02, 0.1, 0.5, 2.0):
        times = max(3, min(200, int(2 / seconds)))
        print(f"{seconds * 1e3:8.0f} ms  {sleeping(seconds, times):9.1f}    {woken_from_epoll(seconds, times):9.1f}",
              flush=True)


if __name__ == "__main__":
    main()
