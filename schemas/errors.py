"""The exceptions every layer raises; `flows.cli` maps each class to one exit code.

Messages name the thing that is wrong and the fix, because the person reading them is a data team member looking at a
terminal, not the author of the code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class SynthgateError(Exception):
    """Base class for every error synthgate raises on purpose."""


class InvalidInputError(SynthgateError, ValueError):
    """The input (file, table, request or option) cannot be used as given."""


@dataclass(frozen=True)
class ValidationFailure:
    """One broken rule in the input data: where, which rule, how often, examples and what to do."""

    column: str | None
    rule: str
    count: int | None = None
    examples: list[Any] = field(default_factory=list)
    detail: str = ""
    fix: str = ""

    def describe(self) -> str:
        where = f"column {self.column!r}" if self.column else "table"
        parts = [f"{where}: rule {self.rule}"]
        if self.count is not None:
            parts.append(f"{self.count} bad value(s)")
        if self.examples:
            parts.append(f"e.g. {self.examples[:5]!r}")
        if self.detail:
            parts.append(self.detail)
        text = ", ".join(parts)
        return f"{text}. Fix: {self.fix}" if self.fix else text


class ValidationFailedError(InvalidInputError):
    """The data broke one or more rules of its schema; every failure is listed, not just the first."""

    def __init__(self, source: str, failures: list[ValidationFailure], *, outcome: str = "nothing was trained"):
        self.source = source
        self.failures = list(failures)
        lines = [f"{source}: {len(self.failures)} validation rule(s) failed; {outcome}."]
        lines += [f"  - {f.describe()}" for f in self.failures]
        super().__init__("\n".join(lines))


class NotFittedError(SynthgateError, AttributeError):
    """A model or encoder was used before `fit`."""


class GateRefusedError(SynthgateError):
    """A fidelity or privacy gate refused the synthetic data; nothing was published."""

    def __init__(self, gate_result: Any, report_path: str | None = None):
        self.gate_result = gate_result
        self.report_path = report_path
        failing = ", ".join(gate_result.failing) if getattr(gate_result, "failing", None) else "unknown"
        msg = f"gates refused the synthetic data (failing: {failing}); nothing was written to the output path"
        if report_path:
            msg += f"; see the report at {report_path}"
        super().__init__(msg)
