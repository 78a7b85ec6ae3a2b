#!/usr/bin/env bash
# Reproduce the figures in BENCHMARKS.md (as root, after ./bootstrap.sh setup).
# About two hours on a 2-core machine; results go to bench/results/.
# AGAINST: the commit to compare with where a benchmark measures a change
# (default: the commit before this round's, 8e683cb).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
AGAINST=${AGAINST:-8e683cb}
mkdir -p bench/results
$PY bench/bench_record.py --backends fanotify,bcc --rounds 40 --block 8 --burst 2000 --concurrency 8 | tee bench/results/record.txt
$PY bench/bench_latency.py --backends fanotify,bcc -n 500 -c 4 --idle 60 --memory 100,10000 | tee bench/results/latency.txt
$PY bench/bench_scaling.py --backends fanotify,bcc --levels 1,2,4,8,16 --rounds 8 | tee bench/results/scaling.txt
$PY bench/bench_cpu.py --backends fanotify,bcc --mode seq -n 300 --rounds 4 --against "$AGAINST" | tee "bench/results/cpu-seq-vs-$AGAINST.txt"
$PY bench/bench_cpu.py --backends fanotify,bcc --mode burst -n 400 -c 8 --rounds 3 --against "$AGAINST" | tee "bench/results/cpu-burst-vs-$AGAINST.txt"
$PY bench/bench_bigspec.py --backends fanotify,bcc -n 100 --against "$AGAINST" | tee "bench/results/bigspec-vs-$AGAINST.txt"
$PY bench/bench_syscall_tax.py --backends bcc,fanotify --rounds 6 | tee bench/results/syscall-tax.txt
$PY bench/bench_host.py --rounds 3 | tee bench/results/host.txt
$PY bench/bench_pages.py --backends fanotify,bcc -n 20 --rounds 2 | tee bench/results/pages.txt
$PY bench/bench_wakeup.py | tee bench/results/wakeup.txt
$PY bench/bench_report.py | tee bench/results/report.txt
