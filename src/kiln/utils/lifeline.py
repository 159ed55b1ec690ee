"""Worker processes that die with their parent: after `kill -9` of `kiln clean` or `kiln tokenize`, no worker may
keep running or writing (they used to: a pool process waits on its job queue forever, since its siblings hold
that pipe open too, and an extraction worker waits on its pool process).

`die_with_parent(parent)` is called first thing in every worker process a stage starts (a pool's initializer, the
extraction worker), with the pid of the process that started it:
- on Linux it asks the kernel for SIGKILL when the parent dies (`prctl(PR_SET_PDEATHSIG)` through ctypes): no
  polling, and it works while the worker is stuck in C code (a pathological page in the HTML parser), where no
  Python-level check would run. The signal is sent when the *thread* that forked the worker ends; kiln forks
  its workers from the thread that runs the whole stage, so that is the parent's lifetime;
- a parent that died between the fork and the prctl call is caught by comparing `os.getppid()` once armed;
- the fallback where prctl is missing: with `watch`, a daemon thread checks `os.getppid()` once a second and exits
  the process when the parent is gone; a worker with natural checkpoints (tokenize's parts) can instead call
  `exit_if_orphaned` between them.
A process group was rejected: killing the group needs someone alive to do it, and `kill -9` of the parent
leaves no one; it would also take the user's shell job control with it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_SECONDS = 1.0


def die_with_parent(parent: int, watch: bool = True) -> None:
    """End this process (SIGKILL, or `os._exit`) when process `parent`, the one that started it, ends."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    exit_if_orphaned(parent)  # the parent died before the signal was armed
    if watch:
        threading.Thread(target=_watch, args=(parent,), name="kiln-lifeline", daemon=True).start()


def exit_if_orphaned(parent: int) -> None:
    """Exit now, without cleanup, if `parent` is no longer this process's parent (it died)."""
    if os.getppid() != parent:
        os._exit(1)


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    os._exit(1)
