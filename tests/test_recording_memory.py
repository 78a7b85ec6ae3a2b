"""Large specs keep the recorder's memory bounded: rows are written by bytes, not only
by count or time, and converted to Parquet a row group at a time."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from runctrace.store import buffer
from runctrace.events import ContainerEvent, EventType
from runctrace.store import DatasetRecorder

T0 = 1_795_000_000 * 10**9
SPEC = 16 << 20  # the largest config.json the recorder reads


def big_add(i: int, size: int = SPEC) -> ContainerEvent:
    config = {"process": {"args": ["x"]}, "annotations": {"big": f"{i:03d}" + "y" * (size - 64)}}
    return ContainerEvent(EventType.ADD, f"c{i}", 1000 + i, config, "/b", T0 + 2 * i, "fake")


def test_journaled_and_pending_rows_stay_within_the_budget(tmp_path):
    rec = DatasetRecorder(str(tmp_path / "d"), host="h")
    for i in range(12):
        rec.write(big_add(i))
        assert rec._pending_bytes < buffer.MEMORY_BUDGET + SPEC + 65536
        rec.flush()
        assert rec._journaled_bytes < buffer.MEMORY_BUDGET + SPEC + 65536
    assert rec.files_written >= 2  # written early, long before the file interval
    rec.close()


@pytest.mark.parametrize("output", ["data", "one.parquet"])
def test_peak_memory_of_many_16_mib_specs_is_bounded(tmp_path, output):
    """24 containers with 16 MiB specs: 384 MiB of config_json. Held until the flush
    or file interval (or close) and converted at once, the recorder's memory grew by
    several times that; bounded, it grows by a few budgets' worth whatever the count."""
    script = textwrap.dedent(f"""
        import os, resource, sys
        os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"  # as `record` runs
        sys.path.insert(0, {str(tmp_path)!r})
        from test_memory_child import big_add
        from runctrace.events import ContainerEvent, EventType
        from runctrace.store import open_recorder
        rec = open_recorder({str(tmp_path / output)!r}, host="h")
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for i in range(24):
            rec.write(big_add(i))
            rec.write(ContainerEvent(EventType.REMOVE, f"c{{i}}", 1000 + i, None, "/b", 2 * i + 1, "fake"))
            due = rec.flush_due_in()
            if due is not None and due <= 0:  # as the session calls it
                rec.flush()
        rec.close()
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) // 1024)
    """)
    (tmp_path / "test_memory_child.py").write_text(
        "from runctrace.events import ContainerEvent, EventType\n"
        f"T0, SPEC = {T0}, {SPEC}\n" + textwrap.dedent(__import__("inspect").getsource(big_add)))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    growth_mib = int(res.stdout.strip())
    assert growth_mib < 400, f"peak RSS grew by {growth_mib} MiB"
