"""synthgate: privacy-preserving synthetic data through Prefect flows, with gates that refuse to publish.

The repository keeps the project's folders at its root (`flows/`, `tasks/`, `models/`, `schemas/`); `pyproject.toml`
maps them into this package (`synthgate.flows`, ...), so an install puts only `synthgate` into site-packages. See
`docs/decisions.md#one-namespace`.
"""

__version__ = "0.1.0"
