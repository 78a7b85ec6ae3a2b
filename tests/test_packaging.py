"""`pip install .` gives one namespace, runctrace, with the BPF sources inside it."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contents(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("runctrace-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("runctrace-")}
    assert tops == {"runctrace"}  # not "tracer" or "analysis": PyPI has unrelated packages by those names
    for needed in ("runctrace/backends/fanotify/correlator.py", "runctrace/backends/bcc/notifier.py", "runctrace/_sys.py",
                   "runctrace/runc/tracker.py", "runctrace/store/schema.py", "runctrace/cli/__init__.py",
                   "runctrace/workload/generator.py", "runctrace/analysis/__init__.py",
                   "runctrace/bpf/runctrace.bpf.c", "runctrace/bpf/runctrace.h"):
        assert needed in names
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "runctrace = runctrace.cli:main" in entry
