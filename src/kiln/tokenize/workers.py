"""Worker processes that die with their parent.

A `ProcessPoolExecutor` worker blocks on its task queue, whose pipe every worker holds open: when the parent is
killed (`kill -9`, the OOM killer) nothing tells the workers, so they finish the queued parts, keep writing
shards nobody will count, and then wait forever. Two guards, both set up by `die_with_parent`, the pool's
initializer:

- **the parent-death signal** (Linux `prctl(PR_SET_PDEATHSIG, SIGKILL)`, through ctypes): the kernel kills the
  worker the moment its parent dies, even in the middle of a part (whose files are written atomically, so
  nothing half-written is left under a real name; the next run removes the temp file);
- **`os.getppid()` checked before each part** (`exit_if_orphaned`), the fallback: the parent-death signal is
  Linux-only, it is tied to the *thread* that forked the worker rather than the process, and a parent that dies
  between the fork and the `prctl` call is missed by it. An orphan is re-parented, so its `getppid()` changes;
  it then exits before starting another part (at worst finishing the one in flight).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """Arrange for this (worker) process to be killed when `parent` dies; exit at once if it already has."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no usable libc: the getppid() check still stops the worker between parts
    exit_if_orphaned(parent)


def exit_if_orphaned(parent: int) -> None:
    """Exit now, without cleanup, if `parent` is no longer this process's parent (it died)."""
    if os.getppid() != parent:
        os._exit(1)
