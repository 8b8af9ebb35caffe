"""synthgate: privacy-preserving synthetic data through Prefect flows, with gates that refuse to publish.

The repository keeps the project's folders at its root (`flows/`, `tasks/`, `models/`, `schemas/`); `pyproject.toml`
maps them into this package (`synthgate.flows`, ...), so an install puts only `synthgate` into site-packages. See
`docs/decisions.md#one-namespace`.

The Python API, for notebooks (see the README):

    import synthgate
    result = synthgate.synthesize(df, seed=0)          # the same gated flow as `synthgate run`
    synth = synthgate.Synthesizer(model="gmm").fit(df)  # fit once, sample many times
    rows = synth.sample(100)

Names are loaded on first use, so `import synthgate` (and `synthgate --help`) stays light: no torch, no Prefect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["GateRefusedError", "SynthesisResult", "Synthesizer", "synthesize"]

_LAZY = {
    "synthesize": "synthgate.flows.api",
    "Synthesizer": "synthgate.flows.api",
    "SynthesisResult": "synthgate.flows.api",
    "GateRefusedError": "synthgate.schemas.errors",
}

if TYPE_CHECKING:
    from synthgate.flows.api import SynthesisResult, Synthesizer, synthesize
    from synthgate.schemas.errors import GateRefusedError


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'synthgate' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
