"""Churn analysis of runctrace recordings, as pure pandas functions.

    from runctrace.analysis import io, fields, churn

    events = io.load_events("recordings/", since="2026-11-28", namespaces=["prod-*"])
    lives = events.pipe(fields.derive_all).pipe(churn.lifetimes)
    lives.pipe(churn.restart_loops, threshold=5, window="1h")

Modules:

- :mod:`~runctrace.analysis.scan` and :mod:`~runctrace.analysis.io`: the only ones
  that touch files. ``scan`` finds the files (directories, hive keys, journals,
  entries that are not regular files) and reads their footers; ``io`` reads their
  rows (Parquet files, directories and hive-partitioned datasets, filters pushed down).
- :mod:`~runctrace.analysis.fields`: derived columns (Kubernetes names from the CRI
  annotations, the manager from runc's root, the command line).
- :mod:`~runctrace.analysis.pairing`: each container's start paired with its
  remove, one row per lifetime (``churn.lifetimes`` is the same function).
- :mod:`~runctrace.analysis.churn`: summaries of lifetimes, each a
  ``DataFrame -> DataFrame`` function that chains with ``.pipe()``.
- :mod:`~runctrace.analysis.report`, :mod:`~runctrace.analysis.render`,
  :mod:`~runctrace.analysis.plot`: what ``runctrace report`` shows, in each format.
"""

from . import churn, fields, io, pairing, scan

__all__ = ["churn", "fields", "io", "pairing", "scan"]
