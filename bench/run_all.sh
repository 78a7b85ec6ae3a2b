#!/usr/bin/env bash
# Reproduce every figure in BENCHMARKS.md (as root, after ./bootstrap.sh setup).
# Takes about 140 minutes on a 2-core machine; results go to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p bench/results
$PY bench/bench_record.py --backends fanotify,bcc --rounds 40 --block 8 --burst 2000 --concurrency 8 | tee bench/results/record.txt
$PY bench/bench_latency.py --backends fanotify,bcc -n 500 -c 4 --idle 60 --memory 100,10000 | tee bench/results/latency.txt
$PY bench/bench_scaling.py --backends fanotify,bcc --levels 1,2,4,8,16 --rounds 8 | tee bench/results/scaling.txt
# This round: fanotify sleeps 3 ms, then reads; against the round's start (fac7896)
$PY bench/bench_cpu.py --backends fanotify --mode seq -n 300 --rounds 4 --against fac7896 | tee bench/results/cpu-seq-vs-fac7896.txt
$PY bench/bench_cpu.py --backends fanotify --mode burst -n 400 -c 8 --rounds 3 --against fac7896 | tee bench/results/cpu-burst-vs-fac7896.txt
$PY bench/bench_host.py --rounds 3 --against fac7896 | tee bench/results/host-vs-fac7896.txt
$PY bench/bench_latency.py --backends fanotify -n 800 -c 4 --against fac7896 --rounds 4 | tee bench/results/latency-fanotify-vs-fac7896.txt
$PY bench/bench_record.py --backends fanotify --rounds 30 --block 8 --against fac7896 --overhead-only | tee bench/results/overhead-fanotify-vs-fac7896.txt
# The previous round: fanotify holds connector messages; CPU against its start (b08be7e), and its cost to the rest of the host
$PY bench/bench_cpu.py --backends fanotify,bcc --mode seq -n 300 --rounds 4 --against b08be7e | tee bench/results/cpu-seq-vs-b08be7e.txt
$PY bench/bench_cpu.py --backends fanotify,bcc --mode burst -n 400 -c 8 --rounds 3 --against b08be7e | tee bench/results/cpu-burst-vs-b08be7e.txt
$PY bench/bench_host.py --rounds 3 --against b08be7e | tee bench/results/host-vs-b08be7e.txt
# Two rounds ago: CPU against its start (4ff5670); the eBPF backend against its parent with syscall tracepoints (dadd419)
$PY bench/bench_cpu.py --backends fanotify,bcc --mode seq -n 300 --rounds 4 --against 4ff5670 | tee bench/results/cpu-seq-vs-4ff5670.txt
$PY bench/bench_cpu.py --backends fanotify,bcc --mode burst -n 400 -c 8 --rounds 3 --against 4ff5670 | tee bench/results/cpu-burst-vs-4ff5670.txt
$PY bench/bench_syscall_tax.py --backends bcc,fanotify --rounds 6 --against dadd419 | tee bench/results/syscall-tax-vs-dadd419.txt
$PY bench/bench_record.py --backends bcc --rounds 30 --block 8 --against dadd419 --overhead-only | tee bench/results/overhead-bcc-vs-dadd419.txt
$PY bench/bench_cpu.py --backends bcc --mode seq -n 300 --rounds 6 --against dadd419 | tee bench/results/cpu-seq-bcc-vs-dadd419.txt
# CPU against the start of three rounds ago (d48fcd6)
$PY bench/bench_cpu.py --backends fanotify,bcc --mode seq -n 300 --rounds 4 --against d48fcd6 | tee bench/results/cpu-seq-vs-d48fcd6.txt
$PY bench/bench_cpu.py --backends fanotify,bcc --mode burst -n 400 -c 8 --rounds 3 --against d48fcd6 | tee bench/results/cpu-burst-vs-d48fcd6.txt
$PY bench/bench_cpu.py --backends fanotify,bcc --mode seq -n 80 --gap 0.1 --rounds 3 --against d48fcd6 | tee bench/results/cpu-gap-vs-d48fcd6.txt
$PY bench/bench_record.py --backends bcc --rounds 30 --block 8 --against d48fcd6 --overhead-only | tee bench/results/overhead-bcc-vs-d48fcd6.txt
$PY bench/bench_record.py --backends fanotify --rounds 30 --block 8 --against d48fcd6 --overhead-only | tee bench/results/overhead-fanotify-vs-d48fcd6.txt
# CPU against the start of four rounds ago (9765e72), and the start overhead with it as a side
$PY bench/bench_cpu.py --backends fanotify,bcc --mode seq -n 300 --rounds 3 --against 9765e72 | tee bench/results/cpu-seq-journal.txt
$PY bench/bench_cpu.py --backends fanotify,bcc --mode seq -n 80 --gap 0.1 --rounds 3 --against 9765e72 | tee bench/results/cpu-gap-journal.txt
$PY bench/bench_cpu.py --backends fanotify,bcc --mode burst -n 400 -c 8 --rounds 3 --against 9765e72 | tee bench/results/cpu-burst-journal.txt
$PY bench/bench_record.py --backends bcc,fanotify --rounds 25 --block 8 --against 9765e72 --overhead-only | tee bench/results/overhead-journal-vs-9765e72.txt
$PY bench/bench_pages.py --backends fanotify,bcc -n 20 --rounds 2 --against ed6a4ec | tee bench/results/pages.txt
$PY bench/bench_wakeup.py | tee bench/results/wakeup.txt
$PY bench/bench_report.py | tee bench/results/report.txt
