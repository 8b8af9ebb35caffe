"""Check a run request before any work, and decide once how the run reads, caches and writes.

Everything that can be refused from the request alone (an unknown model, `auto` with a budget, a half-given
database target, streaming with options it cannot serve) is refused here, before the table is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.request import RunRequest
from synthgate.tasks.cache import cache_root
from synthgate.tasks.scan import BATCH_ROWS, MAX_TRAIN_ROWS, stream_input
from synthgate.tasks.sql import split_table_name

# Past these sizes a run streams its input (two passes) and its output (docs/decisions.md#streaming-thresholds).
STREAM_OUTPUT_ROWS = 2_000_000
STREAM_INPUT_BYTES = 1 << 30


def available_models() -> list[str]:
    """The model names a request may ask for: the registry's, plus `auto` (the one place the flow asks)."""
    from synthgate.models.registry import model_names

    return [*model_names(), "auto"]


@dataclass(frozen=True)
class RunOptions:
    """How one run executes, beside what it asks for (`RunRequest`).

    Attributes:
        use_cache: reuse a fitted model stored under the same data + schema + training-request hash.
        cache_dir: the model store (default `$SYNTHGATE_CACHE` or `~/.cache/synthgate/models`).
        write_url: also publish the synthetic rows to this SQLAlchemy database (with `write_table`), atomically.
        write_table: the table replaced in `write_url`.
        stream: read the input in batches and write the output in row groups; None decides by size.
        max_train_rows: streaming: train and hold out on a uniform sample of at most this many input rows.
        batch_rows: streaming: rows per input batch.
    """

    use_cache: bool = True
    cache_dir: Path | None = None
    write_url: str | None = None
    write_table: str | None = None
    stream: bool | None = None
    max_train_rows: int = MAX_TRAIN_ROWS
    batch_rows: int = BATCH_ROWS


@dataclass(frozen=True)
class RunPlan:
    """The decisions taken before reading: streamed input, model cache, the options they came from."""

    options: RunOptions
    stream_input: bool
    use_cache: bool
    cache_root: Path

    def stream_output(self, request: RunRequest, n_rows: int) -> bool:
        """Whether the output goes out in row groups: a streamed input, or (left to size) more than 2M rows."""
        too_many = n_rows > STREAM_OUTPUT_ROWS and not request.balance and not self.options.write_url
        return self.stream_input or (self.options.stream is None and too_many)


def check_model_choice(model: str) -> None:
    """Refuse a model name the registry does not know (the CLI and the API alike).

    `auto` with a budget is allowed: it trains one private family chosen by the table's size (`private_auto`), since
    trying several would spend the budget once per candidate.
    """
    if model not in available_models():
        raise InvalidInputError(f"unknown model {model!r}; choose one of {', '.join(available_models())}")


def check_request(request: RunRequest, options: RunOptions) -> None:
    """Refuse what the request alone makes impossible, before any data is read.

    Raises:
        InvalidInputError: an unknown model, or a half-given or malformed write-back target.
    """
    check_model_choice(request.model)
    if bool(options.write_url) != bool(options.write_table):
        raise InvalidInputError("write-back needs both --write-url URL and --write-table NAME")
    if options.write_table:
        split_table_name(options.write_table)  # a bad name fails now, not after training


def decide_stream_input(request: RunRequest, options: RunOptions) -> bool:
    """Whether the input is read in batches: asked for, or (left to size) too large to read whole."""
    if options.stream is False:
        return False
    if options.stream is None and not stream_input(
        request.input, table=request.table, max_rows=options.max_train_rows, min_bytes=STREAM_INPUT_BYTES
    ):
        return False
    if request.balance or options.write_url:
        raise InvalidInputError(
            "the streaming path (a large input or --stream) supports neither --balance nor --write-url yet; "
            "pass --no-stream to read the table whole"
        )
    return True


def plan_run(request: RunRequest, options: RunOptions) -> RunPlan:
    """Check the request, then decide streaming and caching (`auto` keeps no single model to key on)."""
    check_request(request, options)
    return RunPlan(
        options=options,
        stream_input=decide_stream_input(request, options),
        use_cache=options.use_cache and request.model != "auto",
        cache_root=cache_root(options.cache_dir),
    )
