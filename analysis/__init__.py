"""Churn analysis of runctrace recordings, as pure pandas functions.

    from runctrace.analysis import io, fields, churn

    events = io.load_events("recordings/", since="2026-11-28", namespaces=["prod-*"])
    lives = events.pipe(fields.derive_all).pipe(churn.lifetimes)
    lives.pipe(churn.restart_loops, threshold=5, window="1h")

Modules:

- :mod:`~runctrace.analysis.io`: the only one that reads files (Parquet files,
  directories and hive-partitioned datasets, filters pushed down).
- :mod:`~runctrace.analysis.fields`: derived columns (Kubernetes names from the CRI
  annotations, the manager from runc's root, the command line).
- :mod:`~runctrace.analysis.churn`: lifetimes and their summaries, each a
  ``DataFrame -> DataFrame`` function that chains with ``.pipe()``.
- :mod:`~runctrace.analysis.report`, :mod:`~runctrace.analysis.render`,
  :mod:`~runctrace.analysis.plot`: what ``runctrace report`` shows, in each format.
"""

from . import churn, fields, io

__all__ = ["churn", "fields", "io"]
