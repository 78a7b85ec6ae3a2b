"""Reading recordings: the only module of ``analysis`` that touches files."""

from __future__ import annotations

import os
from typing import Iterable, Union

import pandas as pd
import pyarrow.parquet as pq

from runctrace.errors import RunctraceError
from runctrace.schema import COLUMNS, SCHEMA

PathLike = Union[str, "os.PathLike[str]"]


def load_events(paths: Union[PathLike, Iterable[PathLike]]) -> pd.DataFrame:
    """Events from one or more recordings, sorted by time, in the recording schema."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    tables = []
    for path in paths:
        path = os.fspath(path)
        if not os.path.exists(path):
            raise RunctraceError(f"{path}: no such file or directory")
        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises several types for "not parquet"
            raise RunctraceError(f"{path} is not a Parquet file: {err}") from err
        missing = [c for c in ("time", "type", "container_id") if c not in table.column_names]
        if missing:
            raise RunctraceError(f"{path} is not a runctrace recording (no column {', '.join(missing)})")
        tables.append(table)
    frames = [t.to_pandas() for t in tables]
    if not frames or all(f.empty for f in frames):
        return SCHEMA.empty_table().to_pandas()
    df = pd.concat([f for f in frames if not f.empty], ignore_index=True)
    cols = [c for c in COLUMNS if c in df.columns]
    return df[cols].sort_values("time_ns" if "time_ns" in df else "time", kind="stable").reset_index(drop=True)
