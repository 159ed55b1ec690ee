"""The executors of `kiln clean` on their own: every job runs once and comes back with its index, a process's
`per_process` context is entered once, a failing job fails `map`, and `make_executor` picks by config.
(Ray's executor is exercised end to end in test_clean_ray.py.)"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from kiln.clean.executors import InlineExecutor, LocalExecutor, RayExecutor, make_executor

_entered: list[int] = []  # pids that entered `count_entries`, per process (each process has its own list)


@contextlib.contextmanager
def count_entries() -> Iterator[None]:
    _entered.append(os.getpid())
    yield


def square_with_entries(x: int) -> tuple[int, int]:
    """x squared, and how often this process entered `count_entries` so far."""
    return x * x, _entered.count(os.getpid())


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("job three fails")
    return x


@pytest.mark.parametrize("executor", [InlineExecutor(count_entries), LocalExecutor(2, count_entries)])
def test_every_job_comes_back_once_with_its_index(executor: InlineExecutor | LocalExecutor) -> None:
    jobs = [(x,) for x in range(7)]
    with executor:
        results = list(executor.map(square_with_entries, jobs))  # in completion order
    assert sorted(i for i, _ in results) == list(range(7))
    assert all(square == jobs[i][0] ** 2 for i, (square, _) in results)
    assert {entries for _, (_, entries) in results} == {1}  # once per process, not once per job


@pytest.mark.parametrize("executor", [InlineExecutor(), LocalExecutor(2)])
def test_a_failing_job_fails_the_map(executor: InlineExecutor | LocalExecutor) -> None:
    with pytest.raises(ValueError, match="job three fails"), executor:
        list(executor.map(fail_on_three, [(x,) for x in range(6)]))


def test_make_executor_picks_by_kind_workers_and_jobs() -> None:
    assert isinstance(make_executor("local", 1, 5), InlineExecutor)
    assert isinstance(make_executor("local", 4, 1), InlineExecutor)  # one job: no pool to start
    local = make_executor("local", 4, 3)
    assert isinstance(local, LocalExecutor) and local.processes == 3
    ray = make_executor("ray", 2, 5, ray_address="auto")
    assert isinstance(ray, RayExecutor) and (ray.address, ray.num_cpus) == ("auto", 2)
