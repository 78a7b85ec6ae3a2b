"""Finding recordings: which files a set of paths names, and what their footers say.

The first half of reading a recording (:mod:`runctrace.analysis.io` reads the
data): :func:`find` walks the directories, opens each ``*.parquet`` it finds,
checks it is a runctrace recording from its footer, and says in ``notes`` what
it passed by or assumed: entries that are not regular files, directories it
could not list, recorders' journals not yet written as Parquet, files a
compaction already merged, old or newer schema versions.

Files are opened here, never by path inside Arrow: the dataset directory may
hold entries another user put there, and a FIFO named ``x.parquet`` would block
the first ``open()`` for reading forever. :func:`open_regular` opens without
blocking and without following a link, and reads only what ``fstat`` says is a
regular file; anything else is skipped with a note. Arrow reads the data through
:class:`CheckedFiles`, which hands it those checked file objects.

Compaction (``record --compact``) merges a partition's files into one
``compact-*.parquet`` that lists its sources (``runctrace.compacted_from``); if a
crash left sources behind, they are skipped here so no event is counted twice.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from runctrace.errors import RunctraceError
from runctrace.safetext import escape
from runctrace.store.journal import JOURNAL_NAME
from runctrace.store.parquet import BACKEND_KEY, COMPACTED_KEY, HOST_KEY, STATS_KEY
from runctrace.store.schema import SCHEMA_VERSION

from . import fields

PathLike = Union[str, "os.PathLike[str]"]

# Footer keys the recorder does not write itself: the schema's own metadata
# (runctrace.store.schema) and bench/synth.py's mark on generated data.
VERSION_KEY = b"runctrace.schema_version"
SYNTHETIC_KEY = b"runctrace.synthetic"

REQUIRED = ("type", "container_id")  # plus one of time / time_ns


@dataclass
class FileInfo:
    """What a file's footer says, read before any data."""

    path: str
    source: str  # the path given by the user that led to this file
    rows: int
    schema: pa.Schema
    schema_version: Optional[str]
    synthetic: bool
    host: Optional[str]
    backend: Optional[str]
    stats: dict = field(default_factory=dict)
    compacted_from: List[str] = field(default_factory=list)
    owner: Optional[int] = None  # uid of the file, from fstat

    @property
    def enriched(self) -> bool:
        """Has the typed Kubernetes columns (schema >= 2): no need to parse annotations."""
        return all(c in self.schema.names for c in fields.KUBERNETES_COLUMNS)


# ------------------------------------------------------------------ opening files


class NotRegularFile(Exception):
    """A path that is not a regular file (FIFO, socket, device, directory, link): skipped."""

    def __init__(self, path: str, kind: str):
        super().__init__(f"{path}: {kind}, not a regular file")
        self.path = path
        self.kind = kind


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str, follow: bool = False):
    """``path`` opened for reading as a binary file object, if it is a regular file.

    Raises :class:`NotRegularFile` otherwise, having opened nothing that could block
    or act on being opened:

    - ``lstat`` first, so a device node is never opened at all (opening some
      devices does something, e.g. arms a watchdog);
    - then ``O_NONBLOCK``: if the entry was swapped for a FIFO after that ``lstat``,
      the open returns at once instead of waiting for a writer (on a regular file
      the flag changes nothing); ``O_NOFOLLOW``: nor for a link to one;
    - then ``fstat`` on what was opened: that, not the name, is what is read.

    ``follow``: follow a symbolic link; only for a path the user named.
    """
    st = os.stat(path) if follow else os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(path, _kind(st.st_mode))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
    except OSError as err:
        if err.errno == errno.ELOOP and not follow:
            raise NotRegularFile(path, "a symbolic link") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(path, _kind(mode))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class CheckedFiles(pafs.FileSystemHandler):
    """What Arrow's scanner reads through: the files the footers were read from, each
    opened again with :func:`open_regular` (a file can be replaced between the two).

    Keys are the paths passed through :func:`runctrace.safetext.escape`: Arrow takes
    UTF-8 paths only and a file name may hold any bytes; escaping is one to one, and
    leaves ordinary paths as they are. A key not handed out is not opened.
    """

    def __init__(self):
        self._paths = {}  # key -> (path, follow)

    key = staticmethod(escape)

    def add(self, path: str, follow: bool) -> None:
        self._paths[self.key(path)] = (path, follow)

    def open_input_file(self, key):
        try:
            path, follow = self._paths[key]
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "not one of the recordings", key) from None
        try:
            return pa.PythonFile(open_regular(path, follow), mode="r")
        except NotRegularFile as err:  # replaced since its footer was read
            raise OSError(f"{key}: {err.kind}, not a regular file (replaced after its footer was read)") from None

    def open_input_stream(self, key):
        return self.open_input_file(key)

    def get_file_info(self, keys):
        out = []
        for key in keys:
            path, follow = self._paths.get(key, (None, False))
            try:
                st = (os.stat if follow else os.lstat)(path) if path is not None else None
            except OSError:
                st = None
            if st is None:
                out.append(pafs.FileInfo(key, pafs.FileType.NotFound))
            elif stat.S_ISREG(st.st_mode):
                out.append(pafs.FileInfo(key, pafs.FileType.File, size=st.st_size, mtime_ns=st.st_mtime_ns))
            else:
                out.append(pafs.FileInfo(key, pafs.FileType.Unknown))
        return out

    def get_type_name(self):
        return "runctrace-checked"

    def normalize_path(self, key):
        return key

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    def _read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "recordings are only read")

    get_file_info_selector = create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = _read_only
    delete_file = move = copy_file = open_output_stream = open_append_stream = _read_only


def read_footer(path: str, source: str, follow: bool = False) -> FileInfo:
    try:
        with open_regular(path, follow) as f:
            owner = os.fstat(f.fileno()).st_uid
            meta = pq.read_metadata(f)
        schema = meta.schema.to_arrow_schema()
    except (pa.ArrowException, OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RunctraceError(f"{path} is not a runctrace recording: not a Parquet file ({reason})") from err
    kv = dict(meta.metadata or {})
    kv.update(schema.metadata or {})
    names = set(schema.names)
    missing = [c for c in REQUIRED if c not in names]
    if not names & {"time", "time_ns"}:
        missing.append("time")
    if missing:
        raise RunctraceError(
            f"{path} is a Parquet file but not a runctrace recording: it has no column "
            f"{', '.join(missing)} (it has {', '.join(schema.names[:8])}{', ...' if len(names) > 8 else ''})"
        )

    def load_json(key, default):
        try:
            value = json.loads(kv.get(key) or b"null")
        except ValueError:
            return default
        return value if isinstance(value, type(default)) else default

    decode = lambda key: kv[key].decode("utf-8", "replace") if key in kv else None  # noqa: E731
    return FileInfo(
        path=path,
        source=source,
        rows=meta.num_rows,
        schema=schema.remove_metadata(),
        schema_version=decode(VERSION_KEY),
        synthetic=kv.get(SYNTHETIC_KEY, b"").lower() in (b"true", b"1", b"yes"),
        host=decode(HOST_KEY),
        backend=decode(BACKEND_KEY),
        stats=load_json(STATS_KEY, {}),
        compacted_from=[s for s in load_json(COMPACTED_KEY, []) if isinstance(s, str)],
        owner=owner,
    )


# ------------------------------------------------------------------ finding files


def _parquet_files(directory: str):
    """Every ``*.parquet`` under ``directory``, in a stable order, and what was passed by.

    Hidden and ``_``-prefixed entries are skipped silently (the recorder's
    ``.part-*.tmp`` files in flight, Spark's ``_SUCCESS``). Symbolic links are not
    followed: an entry named ``*.parquet`` that is not a regular file, and a link to
    a directory, are returned in ``skipped`` as ``(path, what it is)`` for a note.
    A directory named ``*.parquet`` is searched like any other (Spark writes
    datasets so). Returns ``(files, skipped, unreadable)``; ``unreadable``: directories
    that could not be listed, with the reason.
    """
    files, skipped, unreadable = [], [], []
    todo = [directory]  # a stack, not recursion: a tree may be deeper than Python's stack
    while todo:
        root = todo.pop()
        try:
            with os.scandir(root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            unreadable.append((root, err.strerror or type(err).__name__))
            continue
        subdirs = []
        for e in entries:
            if e.name.startswith((".", "_")):
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    subdirs.append(e.path)
                elif e.name.endswith((".parquet", ".parq")):
                    if e.is_file(follow_symlinks=False):
                        files.append(e.path)
                    else:
                        skipped.append((e.path, _kind(e.stat(follow_symlinks=False).st_mode)))
                elif e.is_symlink() and e.is_dir():
                    skipped.append((e.path, "a symbolic link to a directory"))
            except OSError:  # gone since it was listed
                continue
        todo.extend(reversed(subdirs))
    return files, skipped, unreadable


def _journals(directory: str) -> List[str]:
    """The recorders' journals in a dataset directory (``host=*/.journal-*.jsonl``),
    and those a recorder kept aside: unreadable (``.jsonl.bad``), or not its own to
    trust (``.jsonl.untrusted``: another user's, or with other links or modes)."""
    def names(d):
        try:
            return sorted(os.listdir(d))
        except OSError:  # unreadable: _parquet_files has said so
            return []

    out = []
    for host in names(directory):
        if host.startswith("host=") and os.path.isdir(os.path.join(directory, host)):
            out.extend(os.path.join(directory, host, n) for n in names(os.path.join(directory, host))
                       if JOURNAL_NAME.match(n.removesuffix(".bad").removesuffix(".untrusted")))
    return out


def hive_keys(files: Sequence[str], base: str) -> List[str]:
    keys: List[str] = []
    for f in files:
        for part in os.path.relpath(os.path.dirname(f), base).split(os.sep):
            if "=" in part:
                k = part.split("=", 1)[0]
                if k not in keys:
                    keys.append(k)
    return keys

@dataclass
class Found:
    """What :func:`find` found: the files to read, grouped by the path that named them."""

    sources: List[Tuple[str, List[str], Optional[str]]]  # (path given, its files, hive base or None)
    infos: List[FileInfo]  # one per file to read, footer read
    files: "CheckedFiles"  # what Arrow opens them through
    notes: List[str]


def find(paths: Union[PathLike, Iterable[PathLike]]) -> Found:
    """The recordings ``paths`` name (files and directories), footers read and checked.

    Raises :class:`RunctraceError` for a path that does not exist or a file that is
    not a recording.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    notes: List[str] = []
    found = []  # (source path, [files], hive base or None)
    todo = []  # (file, source, follow a link?)
    skipped = []  # (path, what it is)
    for path in (os.fspath(p) for p in paths):
        if os.path.isdir(path):
            files, passed, unreadable = _parquet_files(path)
            skipped += passed
            notes += _directory_notes(path, files, unreadable, _journals(path))
            found.append((path, files, path))
            todo.extend((f, path, False) for f in files)
        elif os.path.exists(path):
            # A path the user named is theirs: a link there is followed (what it
            # leads to must still be a regular file). Inside a directory, where
            # others may have written, links are not.
            found.append((path, [path], None))
            todo.append((path, path, True))
        else:
            raise RunctraceError(f"{path}: no such file or directory")

    def footer(args):
        try:
            return read_footer(*args)
        except NotRegularFile as err:
            return err

    with ThreadPoolExecutor(max_workers=8) as pool:
        read = list(pool.map(footer, todo))
    infos = [i for i in read if isinstance(i, FileInfo)]
    skipped += [(e.path, e.kind) for e in read if isinstance(e, NotRegularFile)]
    if skipped:  # one note, however many: a directory of FIFOs must not bury the report
        path, kind = skipped[0]
        more = f"; and {len(skipped) - 1} more such entries" if len(skipped) > 1 else ""
        notes.append(f"skipped {path}: {kind}, not a regular file{more}")
    checked = CheckedFiles()
    for file, _, follow in todo:
        checked.add(file, follow)
    unread = {e.path for e in read if isinstance(e, NotRegularFile)}
    replaced, merge_notes = _merged(infos)
    notes += merge_notes
    infos = [i for i in infos if i.path not in replaced]
    sources = [(src, [f for f in files if f not in unread and f not in replaced], base) for src, files, base in found]
    return Found(sources=sources, infos=infos, files=checked, notes=notes + _version_notes(infos))


def _directory_notes(path: str, files, unreadable, journals) -> List[str]:
    notes = []
    if not files:
        notes.append(f"{path}: no .parquet files in this directory")
    for d, reason in unreadable[:1]:
        more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
        notes.append(f"could not list {d}{more}: {reason}; files in it are left out")
    if journals:
        notes.append(
            f"{path}: {len(journals)} recorder journal(s) hold events not yet in Parquet, left out here: "
            "a running recorder's (written as Parquet every --file-interval and when it stops), or one "
            f"that crashed (the next `runctrace record -o {path}` writes them), e.g. {journals[0]}"
        )
    return notes


def _merged(infos: Sequence[FileInfo]):
    """The files a compacted file replaces (``(paths, notes)``).

    A compacted file replaces the files it lists (same directory); after a crash
    they can still be there: each event is read once. Only files of its own owner:
    a file someone else put in the directory cannot hide the recorder's.
    """
    owner = {i.path: i.owner for i in infos}
    replaced, refused, notes = set(), [], []
    for i in infos:
        for name in i.compacted_from:
            listed = os.path.join(os.path.dirname(i.path), name)
            if "/" in name or listed == i.path or listed not in owner:
                continue
            if owner[listed] == i.owner:
                replaced.add(listed)
            else:
                refused.append((i.path, listed))
    if refused:
        compact, listed = refused[0]
        notes.append(
            f"read {len(refused)} file(s) all the same that a file of another owner lists as merged into it, "
            f"e.g. {listed} (listed by {compact})"
        )
    if replaced:
        notes.append(f"skipped {len(replaced)} file(s) already merged into a compact-*.parquet")
    return replaced, notes


def _version_notes(infos: Sequence[FileInfo]) -> List[str]:
    """What was assumed about files of other schema versions, and synthetic data."""
    notes = []
    unversioned = [i.path for i in infos if i.schema_version is None]
    if unversioned:
        notes.append(
            f"{len(unversioned)} file(s) carry no schema version (written before runctrace "
            f"recorded one, e.g. {unversioned[0]}); read as version 1"
        )
    old = [i.path for i in infos if not i.enriched]
    if old:
        notes.append(
            f"{len(old)} file(s) predate schema version 2 (e.g. {old[0]}): Kubernetes fields and "
            "the manager are derived from their annotations and runc root; they have no 'initial' events"
        )
    newer = sorted({i.schema_version for i in infos if i.schema_version and _newer(i.schema_version)})
    if newer:
        notes.append(
            f"some files were written by a newer runctrace (schema version {', '.join(newer)}; "
            f"this one reads version {SCHEMA_VERSION}): columns it does not know are ignored"
        )
    if any(i.synthetic for i in infos):
        notes.append("this dataset is SYNTHETIC (generated by bench/synth.py), not a real recording")
    return notes


def _newer(version: str) -> bool:
    try:
        return int(version) > int(SCHEMA_VERSION)
    except ValueError:
        return True


__all__ = ["CheckedFiles", "FileInfo", "Found", "NotRegularFile", "find", "hive_keys", "open_regular", "read_footer"]
