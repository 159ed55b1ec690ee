"""Where `kiln clean`'s per-shard jobs run: in this process, in a local process pool, or as Ray tasks.

Every executor is a context manager (its processes or its Ray connection live as long as the `with` block) with
one method, `map(fn, jobs)`: call `fn(*args)` for each job's arguments and yield `(job index, result)` as
jobs finish, in completion order. The runner picks one with `make_executor` and otherwise never knows which
it has, so resume, outputs and stats are the same on all three by construction.

What Ray changes, all of it in `RayExecutor`:
- it connects to a cluster (`ray_address`) or starts a local Ray (with the driver's import path for its
  workers, see `worker_runtime_env`), or uses the Ray the caller already initialised;
- a job is a Ray task of 1 CPU, and its arguments must make sense on another machine: the runner sends
  absolute paths, and on a cluster the inputs and output must be on storage every node sees at the same path,
  with kiln (and the steps' dependencies) installed on every node;
- at most two tasks per cluster CPU are submitted at a time, more as they finish; on failure or Ctrl-C no
  more are submitted (as the local pool drops the jobs not yet started), and Ray is shut down only if it was
  started here, which ends the tasks still running. Nothing is `ray.cancel`led: cancelling a task while it
  finishes can abort the driver inside Ray (`Check failed: it != submissible_tasks_.end()`, ray-project/ray
  issue 54846; it killed a CI run here), so on a Ray of the caller's at most that window of tasks runs on.

`per_process` (optional) is a context every process that runs jobs enters once, for as long as the executor
lives: `kiln clean` passes `extract.reuse_workers`, so one extraction worker serves all the shards of a
process. Ray's worker processes belong to Ray, which may kill them without notice (and so orphan a helper they
kept alive), so under Ray it is entered around each job instead.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any, Literal, Protocol, Self, TypeVar

R = TypeVar("R")
Job = tuple[Any, ...]  # the positional arguments of one call
PerProcess = Callable[[], contextlib.AbstractContextManager[Any]]


class Executor(Protocol):
    """Runs independent jobs; see the module docstring."""

    def __enter__(self) -> Self: ...

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None: ...

    def map(self, fn: Callable[..., R], jobs: Sequence[Job]) -> Iterator[tuple[int, R]]:
        """Run `fn(*job)` for every job; yield (index in `jobs`, result) as each finishes. The first failure
        is raised here, and the jobs still pending are abandoned when the `with` block exits."""
        ...


def make_executor(
    kind: Literal["local", "ray"],
    workers: int,
    n_jobs: int,
    ray_address: str | None = None,
    per_process: PerProcess | None = None,
) -> Executor:
    """The executor for `kind` with `workers` processes or CPUs (0 = one per CPU). Locally, never more processes
    than jobs, and none at all for one: the job then runs here, without a process to start."""
    cpus = workers or os.cpu_count() or 1
    if kind == "ray":
        return RayExecutor(ray_address, cpus, per_process)
    processes = min(cpus, n_jobs)
    return LocalExecutor(processes, per_process) if processes > 1 else InlineExecutor(per_process)


class InlineExecutor:
    """Jobs one after the other in this process (one worker, or one shard: a pool would only cost a fork)."""

    def __init__(self, per_process: PerProcess | None = None) -> None:
        self._per_process = per_process
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Self:
        if self._per_process is not None:
            self._stack.enter_context(self._per_process())
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._stack.close()

    def map(self, fn: Callable[..., R], jobs: Sequence[Job]) -> Iterator[tuple[int, R]]:
        for i, args in enumerate(jobs):
            yield i, fn(*args)


class LocalExecutor:
    """Jobs in a pool of `processes` local processes (forked where the OS can: no re-import per process)."""

    def __init__(self, processes: int, per_process: PerProcess | None = None) -> None:
        self.processes = processes
        self._per_process = per_process
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Self:
        import multiprocessing as mp

        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        self._pool = ProcessPoolExecutor(
            self.processes, mp_context=ctx, initializer=_enter_for_life, initargs=(self._per_process, os.getpid())
        )
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if self._pool is not None:
            # After a failure, the jobs not yet started are dropped rather than run to no purpose.
            self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)
            self._pool = None

    def map(self, fn: Callable[..., R], jobs: Sequence[Job]) -> Iterator[tuple[int, R]]:
        assert self._pool is not None, "use the executor in a with block"
        futures: dict[Future[R], int] = {self._pool.submit(fn, *args): i for i, args in enumerate(jobs)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


def _enter_for_life(per_process: PerProcess | None, parent: int | None = None) -> None:
    """Pool process initializer: die with `parent` (see `kiln.utils.lifeline`: a `kill -9` of the run leaves
    no pool process behind), then enter `per_process` and never leave it. What it holds open (kiln clean's
    extraction worker, a daemon process) ends with the pool process."""
    if parent is not None:
        from kiln.utils.lifeline import die_with_parent

        die_with_parent(parent)
    if per_process is not None:
        per_process().__enter__()


class RayExecutor:
    """Jobs as Ray tasks of 1 CPU each, on the cluster at `address`, or on a Ray started here with `num_cpus`
    CPUs when `address` is None, or on the Ray this process has already initialised (left running)."""

    def __init__(self, address: str | None, num_cpus: int, per_process: PerProcess | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self._per_process = per_process
        self._ray: Any = None
        self._started = False
        self._pending: dict[Any, int] = {}  # task ref -> job index

    def __enter__(self) -> Self:
        self._ray, self._started = _ray_connect(self.address, self.num_cpus)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        ray, self._ray = self._ray, None
        if ray is None:
            return
        self._pending.clear()  # a failed job (or Ctrl-C) stops the run: nothing more is submitted
        if self._started:
            ray.shutdown()  # ends this driver's job, and with it the tasks still running

    def map(self, fn: Callable[..., R], jobs: Sequence[Job]) -> Iterator[tuple[int, R]]:
        ray = self._ray
        assert ray is not None, "use the executor in a with block"
        task = ray.remote(num_cpus=1)(_call_within)
        # Two a CPU keep every CPU busy while finished results travel back, and bound what a failure leaves
        # running (see the module docstring).
        window = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        waiting = iter(enumerate(jobs))
        self._pending = {}
        while True:
            for i, args in itertools.islice(waiting, window - len(self._pending)):
                self._pending[task.remote(self._per_process, fn, *args)] = i
            if not self._pending:
                return
            # All that are ready, at most every half second: one ray.wait per job is quadratic in jobs.
            done, _ = ray.wait(list(self._pending), num_returns=len(self._pending), timeout=0.5)
            for ref in done:
                result = ray.get(ref)  # a task's exception is raised here, as the original exception type
                yield self._pending.pop(ref), result


def _call_within(per_process: PerProcess | None, fn: Callable[..., R], *args: Any) -> R:
    """One Ray task: `fn(*args)` inside `per_process` (see the module docstring for why per job under Ray)."""
    with per_process() if per_process is not None else contextlib.nullcontext():
        return fn(*args)


def _ray_connect(address: str | None, num_cpus: int) -> tuple[Any, bool]:
    """The `ray` module, initialised; and whether it was initialised here (and so must be shut down here)."""
    try:
        import ray
    except ImportError:
        raise ImportError("executor 'ray' needs Ray: pip install 'kiln[ray]'", name="ray") from None
    if ray.is_initialized():  # the caller's (a notebook, a test fixture, a Ray job): use it, leave it running
        return ray, False
    if address is None:
        # address="local": never attach to a cluster found through RAY_ADDRESS or /tmp/ray (pass "auto" for that).
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, runtime_env=worker_runtime_env(),
                 logging_level=logging.WARNING)  # fmt: skip
        return ray, True
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, TimeoutError) as e:
        raise ConnectionError(f"cannot connect to the Ray cluster at {address!r}: {e}") from None
    return ray, True


def worker_runtime_env() -> dict[str, Any]:
    """A runtime_env giving local Ray workers the driver's import path (PYTHONPATH).

    Workers are fresh interpreters that see only installed packages and the driver's cwd; a forked local worker
    would also see a script's directory or `tests/` (where pytest puts it), so steps defined there import the same
    way under Ray. Only for a Ray started here: a cluster's nodes have their own paths.
    """
    paths = [os.path.abspath(p) for p in sys.path if p and os.path.isdir(p)]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}
