"""How many threads a run's CPU work gets: chosen once from the machine and the work, applied, and recorded.

torch, numpy's BLAS and scikit-learn's OpenMP each default to one thread per core, and a run has several such pools
at once (the Prefect server, `auto`'s parallel candidates, the gates). On a small machine their spinning threads
fight for the same cores; see docs/decisions.md#thread-counts for the figures and the rule.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

# The most intra-op threads one table fit gets: the table models' layers are a few hundred units wide, too small for
# more threads to pay for their synchronisation (docs/decisions.md#thread-counts).
MAX_FIT_THREADS = 4


@dataclass(frozen=True)
class ThreadPlan:
    """Thread counts for one run.

    Attributes:
        cpus: cores this process may use (affinity mask and cgroup quota).
        parallel_fits: fits that run at the same time (`auto` trains its candidates in parallel).
        fit_threads: torch intra-op threads, shared by the parallel fits (torch's pool is per process).
        native_threads: BLAS / OpenMP threads (numpy, scipy, scikit-learn in the encoder and the gates).
    """

    cpus: int
    parallel_fits: int
    fit_threads: int
    native_threads: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def usable_cpus() -> int:
    """Cores this process may run on: the affinity mask, capped by a cgroup v2 CPU quota (containers)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    return max(1, cpus)


def plan_threads(*, parallel_fits: int = 1, cpus: int | None = None) -> ThreadPlan:
    """Choose the thread counts for a run that trains `parallel_fits` models at once.

    Each fit gets half of its share of the cores (the other half is left to the Prefect server, the gates and whatever
    else runs on the machine), at least one thread and at most `MAX_FIT_THREADS`. On two cores that is one thread: a
    second one mostly spin-waits and made fits an order of magnitude slower when the cores were busy.
    """
    cpus = usable_cpus() if cpus is None else max(1, cpus)
    parallel_fits = max(1, parallel_fits)
    per_fit = max(1, min(MAX_FIT_THREADS, cpus // parallel_fits // 2))
    return ThreadPlan(cpus=cpus, parallel_fits=parallel_fits, fit_threads=per_fit, native_threads=per_fit)


@contextlib.contextmanager
def use_threads(plan: ThreadPlan) -> Iterator[ThreadPlan]:
    """Apply `plan` to torch and to every loaded BLAS / OpenMP pool; restore the previous counts on exit."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(plan.fit_threads)
    try:
        with threadpool_limits(plan.native_threads):
            yield plan
    finally:
        torch.set_num_threads(before)
