"""How a flow calls its tasks: as Prefect tasks (tracked runs, retries, tags) or as the plain functions inside them.

The same flow body serves `synthgate run` (orchestrated, one Prefect flow run) and the Python API with
`orchestrate=False` (no Prefect server at all), so the two cannot drift apart (docs/decisions.md#flow-steps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Steps:
    """Calls tasks through Prefect when `orchestrate` is true, else calls their `.fn` directly.

    Attributes:
        orchestrate: whether task calls create Prefect task runs (they then need a flow run and an API).
    """

    orchestrate: bool = True

    def __call__(self, step: Any) -> Callable[..., Any]:
        """The callable for one task: the task itself, or the plain function it wraps."""
        return step if self.orchestrate else step.fn

    def map(self, step: Any, items: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        """`step(item, *args, **kwargs)` for every item: mapped task runs in parallel, or a plain loop."""
        if not self.orchestrate:
            return [step.fn(item, *args, **kwargs) for item in items]
        from prefect import unmapped

        futures = step.map(list(items), *(unmapped(a) for a in args), **{k: unmapped(v) for k, v in kwargs.items()})
        return [future.result() for future in futures]


PLAIN = Steps(orchestrate=False)
ORCHESTRATED = Steps(orchestrate=True)
