#!/usr/bin/env python3
"""How fast and how cheaply a backend sees containers, against the kernel's own clock.

    sudo .venv/bin/python bench/bench_latency.py [--backends fanotify,bcc] [-n 300] [-c 4]
                                                  [--idle 60] [--memory 100,2000]
                                                  [--against COMMIT [--rounds 4]]

For each backend, a listener process (this script with --listen) runs the notifier
and prints when it observed each event. The driver starts containers (`runc run -d`
of `sh -c 'sleep X'`) and keeps its own ground truth, independent of the backend:

* detection delay, two ways: add observed minus the moment the container's
  init exec'd its program, as the kernel stamped it (the recorder's own delay:
  both backends resolve a run on that exec); and add observed minus the moment
  runc wrote the container's state.json (its mtime), which adds runc's own time
  from its record to that exec;
* termination delay: remove observed minus the init's exit as the kernel stamped it
  (the driver listens to the process-events connector itself, for execs and exits);
* idle cost: the listener's CPU time and wakeups (context switches) per minute with
  no container starting;
* memory: the listener's RSS after each count of containers in --memory.

--against COMMIT measures the delays only, of this checkout's notifier and of
COMMIT's (from a temporary git worktree, as bench_cpu.py does), in blocks of
n / rounds containers, one listener at a time, the order alternating each round;
each side's percentiles are over all its blocks.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from runctrace import _sys
from runctrace.workload.containers import make_bundle, make_rootfs, runc

CLK_TCK = os.sysconf("SC_CLK_TCK")


def listen(backend: str) -> None:
    """Child mode: print one line per event with the time it was observed."""
    from runctrace.backends import open_notifier

    def on_event(event):
        print(json.dumps([time.time_ns(), event.type.value, event.container_id, event.container_pid]), flush=True)

    notifier, _ = open_notifier(backend, callback=on_event)
    print("ready", flush=True)
    sys.stdin.read()  # until the driver closes our stdin
    notifier.close()


class Listener:
    def __init__(self, backend: str, pythonpath: Optional[str] = None) -> None:
        env = dict(os.environ, PYTHONPATH=pythonpath) if pythonpath else None
        self.proc = subprocess.Popen([sys.executable, __file__, "--listen", backend],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout.readline().strip() == "ready"
        self.events: dict[tuple[str, str], tuple[int, int]] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            obs, kind, cid, pid = json.loads(line)
            self.events.setdefault((kind, cid), (obs, pid))

    def _proc_values(self) -> tuple[float, int, int]:
        cpu = ctx = 0
        for tid in os.listdir(f"/proc/{self.proc.pid}/task"):
            stat = Path(f"/proc/{self.proc.pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += int(stat[11]) + int(stat[12])
            for line in Path(f"/proc/{self.proc.pid}/task/{tid}/status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    ctx += int(line.split()[1])
        rss = next(int(line.split()[1]) for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
        return cpu / CLK_TCK, ctx, rss

    def cpu_seconds(self) -> float:
        return self._proc_values()[0]

    def wakeups(self) -> int:
        return self._proc_values()[1]

    def rss_mib(self) -> float:
        return self._proc_values()[2] / 1024

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


class KernelClock:
    """The kernel's time of every process's exits and execs, from our own connector socket."""

    def __init__(self) -> None:
        self.sock = _sys.open_proc_connector(exec_events=True)
        self.exits: dict[int, int] = {}
        self.execs: dict[int, list[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not select.select([self.sock], [], [], 0.2)[0]:
                continue
            while True:
                try:
                    buf = self.sock.recv(65536)
                except BlockingIOError:
                    break
                for ev in _sys.decode_proc_events(buf):
                    wall = time.time_ns() - (time.monotonic_ns() - ev.timestamp_ns)
                    if ev.what == _sys.PROC_EXIT:
                        self.exits[ev.tgid] = wall
                    elif ev.what == _sys.PROC_EXEC:
                        self.execs.setdefault(ev.tgid, []).append(wall)

    def first_exec(self, pid: int, after_ns: int) -> int | None:
        """When ``pid`` first exec'd after ``after_ns`` (wall clock), if it did."""
        return min((t for t in self.execs.get(pid, ()) if t >= after_ns), default=None)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def drive(bundle: Path, n: int, concurrency: int) -> dict[str, tuple[int, int, int]]:
    """Start n containers; returns id -> (pid, when runc wrote its state.json, when
    runc was started), in ns of the wall clock."""
    truth: dict[str, tuple[int, int, int]] = {}
    lock = threading.Lock()

    def one(_):
        cid = f"lat-{uuid.uuid4().hex[:10]}"
        started = time.time_ns()
        runc("run", "-d", cid, cwd=bundle)
        # the moment the container became visible: runc wrote its state file
        written = os.stat(f"/run/runc/{cid}/state.json").st_mtime_ns
        pid = json.loads(runc("state", cid).stdout)["pid"]
        with lock:
            truth[cid] = (pid, written, started)
        try:  # wait for the init to end without running runc again (each run costs the recorder)
            fd = os.pidfd_open(pid)  # pid 0: runc reports a stopped container so (EINVAL)
            select.select([fd], [], [], 30)
            os.close(fd)
        except (ProcessLookupError, OSError):
            pass
        runc("delete", "--force", cid)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    return truth


class Delays:
    """Delays in ms of the containers a listener reported, against the driver's truth."""

    def __init__(self) -> None:
        self.execd: list[float] = []  # the init's exec of its program -> add
        self.adds: list[float] = []  # runc's write of state.json -> add
        self.removes: list[float] = []  # the init's exit -> remove
        self.missing = 0

    def match(self, listener: Listener, clock: KernelClock, truth: dict[str, tuple[int, int, int]]) -> None:
        for cid, (pid, created, started) in truth.items():
            add, rem = listener.events.get(("add", cid)), listener.events.get(("remove", cid))
            program = clock.first_exec(pid, started)  # the init's only exec: its program
            if not add or not rem or add[1] != pid or pid not in clock.exits or program is None:
                self.missing += 1
                continue
            self.adds.append((add[0] - created) / 1e6)
            self.execd.append((add[0] - program) / 1e6)
            self.removes.append((rem[0] - clock.exits[pid]) / 1e6)

    def report(self, indent: str = "  ") -> None:
        if not self.adds:
            return
        for label, values in (("detection delay (init exec'd its program -> add seen)", self.execd),
                              ("detection delay (state.json written -> add seen)", self.adds),
                              ("termination delay (init exit -> remove seen)", self.removes)):
            print(f"{indent}{label}: p50 {pct(values, .5):.2f} ms, p99 {pct(values, .99):.2f} ms, max {max(values):.2f} ms")


def compare(backend: str, bundle: Path, n: int, concurrency: int, rounds: int, against: str) -> None:
    """The delays of this checkout's notifier and of ``against``'s, interleaved in blocks."""
    # imported here, not at the top: the listener runs this file too, and the
    # imports of bench_cpu (pandas, pyarrow) would weigh on its RSS
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_cpu import sides
    clock = KernelClock()
    per_block = max(1, n // rounds)
    try:
        with tempfile.TemporaryDirectory(prefix="runctrace-bench-") as d, sides(against, Path(d)) as both:
            found = {name: Delays() for name, _ in both}
            for r in range(rounds):
                for name, pythonpath in (both if r % 2 == 0 else both[::-1]):
                    listener = Listener(backend, pythonpath)
                    try:
                        time.sleep(1.0)
                        truth = drive(bundle, per_block, concurrency)
                        time.sleep(1.0)
                        found[name].match(listener, clock, truth)
                    finally:
                        listener.stop()
            for name, _ in both:
                print(f"{backend} {name:>8}: {per_block * rounds} containers at concurrency {concurrency} "
                      f"in {rounds} blocks, {found[name].missing} not matched")
                found[name].report(indent="    ")
    finally:
        clock.stop()


def measure(backend: str, bundle: Path, n: int, concurrency: int, idle: float, memory: list[int]) -> None:
    clock = KernelClock()
    listener = Listener(backend)
    try:
        time.sleep(1.0)
        cpu0, ctx0 = listener.cpu_seconds(), listener.wakeups()
        time.sleep(idle)
        idle_cpu, idle_ctx = listener.cpu_seconds() - cpu0, listener.wakeups() - ctx0
        cpu0 = listener.cpu_seconds()
        truth = drive(bundle, n, concurrency)
        time.sleep(1.0)
        cpu = listener.cpu_seconds() - cpu0
        found = Delays()
        found.match(listener, clock, truth)
        print(f"{backend}: {n} containers at concurrency {concurrency}, {found.missing} not matched")
        found.report()
        print(f"  CPU: {cpu * 1e3 / n:.2f} ms per container (listener process, all threads)")
        print(f"  idle: {idle_cpu * 1e3 * 60 / idle:.1f} ms CPU and {idle_ctx * 60 / idle:.0f} wakeups per minute")
        done = 0
        for target in memory:
            if target > done:
                drive(bundle, target - done, concurrency)
                done = target
            time.sleep(0.5)
            print(f"  RSS after {target} more containers: {listener.rss_mib():.1f} MiB", flush=True)
    finally:
        listener.stop()
        clock.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", help=argparse.SUPPRESS)
    ap.add_argument("--backends", default="fanotify,bcc")
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("-c", "--concurrency", type=int, default=4)
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement")
    ap.add_argument("--memory", default="100,2000", help="container counts at which to read RSS")
    ap.add_argument("--against", help="a commit whose delays to measure beside this checkout's, interleaved")
    ap.add_argument("--rounds", type=int, default=4, help="with --against: blocks per side")
    args = ap.parse_args()
    if args.listen:
        return listen(args.listen)
    with tempfile.TemporaryDirectory(prefix="runctrace-bench-") as d:
        rootfs = make_rootfs(Path(d) / "rootfs")
        bundle = make_bundle(Path(d) / "b", rootfs, ["sh", "-c", "sleep 0.1"], name="short")
        memory = [int(x) for x in args.memory.split(",") if x]
        for backend in args.backends.split(","):
            if args.against:
                compare(backend, bundle, args.n, args.concurrency, args.rounds, args.against)
            else:
                measure(backend, bundle, args.n, args.concurrency, args.idle, memory)


if __name__ == "__main__":
    main()
