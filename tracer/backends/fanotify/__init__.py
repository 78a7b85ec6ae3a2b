"""The fanotify backend: see runc being executed, then follow runc's own records.

How it works, and why each part is needed
-----------------------------------------
1. **fanotify, notification class, on the runc inode.** ``FAN_OPEN_EXEC`` fires when
   any process opens a runc binary for execution. A *notification* group never makes
   the exec wait for us: a frozen (SIGSTOP) or dead recorder cannot delay a container
   start. (Inspektor Gadget's runcfanotify used ``FAN_OPEN_EXEC_PERM`` with a
   blocking reader; one stuck reader then froze every runc exec on the host.)
2. **The process-events connector (netlink).** fanotify reports the open of the
   file, while the exec is under way: ``/proc/PID/cmdline`` may still show the
   caller's. The connector's ``PROC_EVENT_EXEC`` says when the exec is done, so
   runc's argv is read then, with no polling. The same socket's
   ``PROC_EVENT_EXIT`` carries the wait status of every exiting process, which
   gives both "runc create finished" and "the container's init exited, with this
   exit code or signal". A classic-BPF socket filter drops all other connector
   messages in the kernel.

   Only this socket wakes the loop. fanotify queues its event while the exec opens
   the file, before the exec completes and the connector sends EXEC; so the queue
   is read when the first EXEC of each batch of messages is handled (not counting
   a runc init starting its container's program, which is not runc). It holds the
   event of every exec whose EXEC is in that batch by then: the batch was received
   after those EXECs were sent. Waking for fanotify too would cost a wake-up per
   runc exec (3 of the 12 per `runc run`) to learn nothing that cannot wait for
   the EXEC.

   The socket is read in batches, as a network card coalesces interrupts. A
   `runc run` is about nine messages over 20 ms, in clusters: its `runc init`'s
   two execs a millisecond apart, then the init's rename and two helpers'
   exits within half a millisecond, then the program's exec, its exit and
   runc's within two. A wake-up of this thread costs more CPU than most
   messages' handling (some 30 us on a small VM), so when the socket wakes the
   loop, the thread first sleeps ``_COALESCE_NS`` (3 ms) and then takes
   everything queued in one read. While it sleeps, nothing waits on the socket:
   the messages that arrive are queued and wake nobody. (Blocking in the read
   with a receive timeout, to end the batch at a quiet gap, woke the thread in
   the kernel at every message, and the timeout counts in scheduler ticks, so a
   message waited up to 3 ms plus a tick; a sleep is exact, and costs one timer
   wake-up per batch.) A message is held 3 ms after the wake-up, plus the
   handling of the batch ahead of it if it came during that: about 5 ms at
   worst on a small VM, against a 10 ms target for detection and termination
   delay.
3. **The container's init, from the same socket.** runc's init names itself
   ``runc:[2:INIT]`` (``prctl(PR_SET_NAME)``), which the connector reports as a
   ``PROC_EVENT_COMM``; the filter lets through only renames to that name. Its
   next ``PROC_EVENT_EXEC`` is the container's program starting: a `runc run` is
   resolved right there, with the PID, as the eBPF backend does from its
   tracepoints. (runc puts its init under itself with ``CLONE_PARENT``: the init's
   parent is the runc process that made the container.) If this loop is so far
   behind that the init has already ended, its ``PROC_EVENT_EXIT`` names the parent.
4. **runc's own records** turn the other calls into a container with a PID: the
   ``--pid-file``, or ``<root>/<id>/state.json`` as soon as runc writes it (a
   `create`'s init runs its program only at `runc start`, after this runc has
   exited). That part is shared with the eBPF backend: see :mod:`runctrace.runc.tracker`.

Everything runs on one thread around one epoll: no thread per container.

Where each part lives
---------------------
* :mod:`.binwatch`: the runc binaries (1.): the fanotify group and its marks, the
  inotify watch on their directories for a replaced binary, file handles or fds.
* :mod:`.correlator`: what the messages mean (2., 3.): decoded connector messages
  and fanotify's runc execs in, tracker calls out, and every race between them.
  No fd of its own: tests drive it with scripted messages
  (tests/test_fanotify_correlator.py).
* :mod:`.notifier`: the loop: epoll, the connector read in batches with the
  coalescing sleep, the fanotify read when the correlator asks, requests from
  other threads.
"""

from runctrace.backends.fanotify.notifier import FanotifyNotifier

__all__ = ["FanotifyNotifier"]
