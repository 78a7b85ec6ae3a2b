"""What a dataset recorder does at start about recorders that crashed before it.

A crashed recorder leaves its journal (rows not yet in Parquet), perhaps
half-written temporary files, and perhaps a compacted file whose sources it had
not yet deleted. The next recorder on the directory, before it records, writes
each such journal as the Parquet file(s) it would have become (:class:`Recovery`)
and tidies the rest (:func:`clean_leftovers`), so every crash-safe promise of the
layout is kept without a repair step for readers.

Nothing read here is trusted blindly: a journal must be this user's, mode 0600,
one link (:func:`~runctrace.store.journal.trusted_journal`), a regular file of at
most ``MAX_JOURNAL`` bytes; anything else is renamed aside, unread, and named in
a note for the user. Nothing unread is deleted, and the recorder starts anyway.
"""

from __future__ import annotations

import errno
import fcntl
import os
from typing import Callable

from runctrace.safetext import printable
from runctrace.store.compaction import COMPACT_PREFIX, drop_sources
from runctrace.store.journal import JOURNAL_NAME, is_new_name, read_journal, trusted_journal, unlink_stale
from runctrace.store.parquet import DATE_PREFIX
from runctrace.store.trust import TEMP_SUFFIX, kind, open_dir, open_regular, set_aside, still_named, unlink_quietly, why

# The largest journal recovery reads (all its rows are held at once). The recorder
# writes a journal's Parquet file at MEMORY_BUDGET of rows, so its own journals
# stay far below; a larger one is set aside, not read.
MAX_JOURNAL = 1 << 30
# The longest description of an error quoted in a note (it may quote the journal).
_MAX_NOTE = 300

# Writes a crashed recorder's rows as the Parquet file(s) its journal would have
# become: (rows, its pid, its segment, its counters), skipping those it wrote before
# it crashed.
WriteRecovered = Callable[[list, int, int, dict], None]


class Recovery:
    """Writes the journals that crashed recorders left in one host directory as Parquet.

    ``recovered`` counts the rows written; ``notes`` has a line for the user on
    each journal not simply recovered.
    """

    def __init__(self, host_fd: int, write: WriteRecovered) -> None:
        self.host_fd = host_fd
        self.write = write
        self.recovered = 0
        self.notes: list[str] = []

    def run(self) -> None:
        """Recover every journal in the directory.

        A journal still locked belongs to a live recorder, and is left alone; one
        unlinked once we hold its lock was recovered by another recorder starting
        at the same moment. One this recorder's user did not write alone
        (``trusted_journal``) is renamed ``.untrusted``, unread; one that cannot
        be made into a table (it was edited, or a future version wrote it) is
        renamed ``.bad``; one with lines that are no row the recorder writes is
        renamed ``.recovered`` once its other rows are in Parquet; one that cannot
        be written now (a full disk) stays for the next start. Each is named in
        ``notes``.
        """
        names = sorted(os.listdir(self.host_fd))
        for name in names:
            if is_new_name(name):
                unlink_stale(name, self.host_fd)
        for name in names:
            m = JOURNAL_NAME.match(name)
            if not m:
                continue
            try:
                self._recover(name, int(m[1]), int(m[2]))
            except OSError as err:  # one journal never keeps the recorder from starting
                self.notes.append(f"journal {name} kept as it is: {why(err)}")

    def _recover(self, name: str, pid: int, segment: int) -> None:
        host_fd = self.host_fd
        try:
            st = os.stat(name, dir_fd=host_fd, follow_symlinks=False)
        except FileNotFoundError:
            return  # recovered by another recorder meanwhile
        distrust = trusted_journal(st)
        if distrust is None:
            try:
                # O_RDWR: NFS emulates flock with fcntl locks, whose exclusive kind needs it
                fd = open_regular(name, host_fd, MAX_JOURNAL, os.O_RDWR)
            except FileNotFoundError:
                return
            except OSError as err:
                if err.errno == errno.EFBIG:
                    self.notes.append(
                        f"journal {name} set aside as {set_aside(name, '.bad', host_fd)}, unread: {err.strerror}")
                    return
                if err.errno not in (errno.EINVAL, errno.ELOOP):
                    raise
                distrust = kind(os.stat(name, dir_fd=host_fd, follow_symlinks=False).st_mode)  # swapped since
        if distrust is not None:
            self._untrusted(name, distrust)
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a live recorder's
            if not still_named(fd, name, host_fd):
                return  # recovered (or set aside) by another recorder before we got the lock
            distrust = trusted_journal(os.fstat(fd))  # the file opened, not the name stat'ed
            if distrust is not None:
                self._untrusted(name, distrust)
                return
            try:
                rows, recorded, bad, torn = read_journal(fd)
                self.write(rows, pid, segment, recorded)
            except OSError as err:
                # the journal is fine, the disk is not (full, EIO): the next start tries again
                self.notes.append(f"journal {name} kept for the next start: {why(err)}")
                return
            except Exception as err:  # whatever the journal holds, the recorder starts
                # the error may quote the journal: shown to a terminal, short and inert
                error = printable(f"{type(err).__name__}: {err}")
                error = error if len(error) <= _MAX_NOTE else error[:_MAX_NOTE] + "..."
                self.notes.append(f"journal {name} set aside as {set_aside(name, '.bad', host_fd)}: {error}")
                return
            self.recovered += len(rows)
            if bad > torn:
                # lines the recorder did not write as they are (edited, damaged, or a
                # future version's): the rows are in Parquet now, the journal is kept
                kept = set_aside(name, ".recovered", host_fd)
                self.notes.append(f"journal {name}: {len(rows)} event(s) recovered, {bad} unreadable "
                                  f"line(s) skipped; kept as {kept}")
            else:
                os.unlink(name, dir_fd=host_fd)
                if bad:
                    self.notes.append(f"journal {name}: {len(rows)} event(s) recovered, its last line, "
                                      "cut short, skipped")
            os.fsync(host_fd)
        finally:
            os.close(fd)

    def _untrusted(self, name: str, distrust: str) -> None:
        self.notes.append(
            f"journal {name} set aside as {set_aside(name, '.untrusted', self.host_fd)}, unread: "
            f"not trusted ({distrust})")


def clean_leftovers(host_fd: int) -> None:
    """After a crash: drop half-written temp files, finish an interrupted compaction,
    in each date partition of the host directory ``host_fd``."""
    for date_name in os.listdir(host_fd):
        if not date_name.startswith(DATE_PREFIX):
            continue
        try:
            dfd = open_dir(date_name, host_fd, create=False)
        except OSError:
            continue  # not a directory (nor one the recorder made): not its business
        try:
            names = os.listdir(dfd)
            for name in names:
                if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                    unlink_quietly(name, dfd)
            for name in names:
                if name.startswith(COMPACT_PREFIX) and name.endswith(".parquet"):
                    drop_sources(dfd, name)
        finally:
            os.close(dfd)
