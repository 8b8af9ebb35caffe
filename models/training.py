"""The one training loop the neural table models share.

Every model supplies a `step(batch) -> loss` that runs its own forward, backward and optimiser updates (the GAN does a
critic and a generator update per step), and optionally an `evaluate(part) -> loss` for early stopping. The loop owns
everything else, so speed and reporting are fixed in one place:

- the data is moved to the device once; batches are slices of a shuffled index tensor on the same device, so no
  DataLoader, no per-row Python, no host-device copies per step;
- mixed precision (bfloat16 autocast) on CUDA only, via `autocast`; bfloat16 needs no GradScaler;
- a validation split, early stopping on it, and the best epoch's weights (copied in memory) restored at the end;
- one callback after every epoch (`progress`: a progress bar, a cancellation check), and a log line on logger
  `synthgate.models.training` every tenth of the epochs and at the last: epoch, loss, val_loss, rows/s, ETA;
- the batch shrinks to what a share of the device's free memory holds (`memory_batch_size`), never grows.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from synthgate.models.privacy import PrivateTraining

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """One epoch's report, passed to the `progress` callback."""

    epoch: int  # 1-based
    n_epochs: int
    loss: float  # mean training loss over the epoch's batches
    val_loss: float | None  # None when the model has no validation loss (the GAN)
    rows_per_s: float
    eta_s: float


@dataclass
class History:
    """What a fit did, kept on the model as `history_`."""

    loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    epochs_run: int = 0
    seconds: float = 0.0
    stopped_early: bool = False


# A log line every this share of the epochs (and at the last one): ten lines a fit in Prefect's logs, whatever its length.
LOG_SHARE = 0.1


def log_due(epoch: int, n_epochs: int) -> bool:
    """Whether epoch `epoch` (1-based) of `n_epochs` gets a log line: every `LOG_SHARE` of them, and the last."""
    return epoch == n_epochs or epoch % max(1, round(n_epochs * LOG_SHARE)) == 0


def log_epoch(name: str, report: Progress, *, unit: str = "rows") -> None:
    """The one log line format of a training epoch, for table and image models alike."""
    val = "" if report.val_loss is None else f" val_loss {report.val_loss:.4f}"
    logger.info(
        "%s: epoch %d/%d loss %.4f%s, %.0f %s/s, ETA %.1f s",
        name, report.epoch, report.n_epochs, report.loss, val, report.rows_per_s, unit, report.eta_s,
    )  # fmt: skip


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA; nothing on CPU, where it would be slower and less exact."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# A row's training footprint, in bytes per encoded feature (tables) or per pixel value (images): activations,
# their gradients and temporaries of a few hundred units wide networks, generously.
BYTES_PER_VALUE = 4 * 64
MEMORY_SHARE = 0.25  # of the device's free memory that one training batch may take


def free_memory_bytes(device: torch.device) -> int:
    """Free memory on `device`: the CUDA allocator's view of the card, or the host's available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_batch_size(requested: int, values_per_row: int, device: torch.device) -> int:
    """The requested batch, or as many rows as `MEMORY_SHARE` of the free memory holds when that is fewer.

    A guard, not a tuner: the batch is a hyperparameter that changes what is learnt, so it only ever shrinks, and
    then with a warning, rather than fail with an out-of-memory error halfway through a fit (wide images on a
    small GPU).
    """
    cap = max(1, int(free_memory_bytes(device) * MEMORY_SHARE // max(values_per_row * BYTES_PER_VALUE, 1)))
    if cap < requested:
        logger.warning(
            "batch of %d rows does not fit in %.0f%% of the free memory on %s: training with %d", requested,
            100 * MEMORY_SHARE, device, cap,
        )  # fmt: skip
        return cap
    return requested


def split_validation(x: Tensor, fraction: float, generator: torch.Generator) -> tuple[Tensor | None, Tensor | None]:
    """Hold out `fraction` of the rows of `x` (at least 1 when the fraction is positive and there are >= 10 rows).

    Returns `(train_rows, x_val)`: the indices of the training rows, for `train(..., rows=train_rows)`, and a copy of
    the validation rows; `(None, None)` when nothing is held out. Indices, not a copy of the training rows: `train`
    gathers each batch from the full tensor, so a 1M-row fit does not allocate a second copy of them
    (docs/decisions.md#cpu-kernels).
    """
    n = x.shape[0]
    n_val = round(n * fraction) if n >= 10 else 0
    if fraction <= 0 or n_val == 0:
        return None, None
    perm = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
    return perm[n_val:], x.index_select(0, perm[:n_val])


def train(
    step: Callable[[Tensor | None], Tensor],
    x: Tensor,
    *,
    modules: dict[str, nn.Module],
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    evaluate: Callable[[slice], Tensor] | None = None,
    x_val: Tensor | None = None,
    patience: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    name: str = "model",
    drop_last: bool = False,
    rows: Tensor | None = None,
    privacy: PrivateTraining | None = None,
    min_private_rows: int = 1,
    indices: bool = False,
) -> History:
    """Run `epochs` passes of shuffled mini-batches over `x`, with early stopping on `x_val`.

    Args:
        step: one optimisation step on a batch (b, d); returns the batch loss (a 0-d tensor, not synced per step).
        x: (n, d) training rows, already on the model's device.
        modules: the networks whose weights are snapshotted at the best validation loss and restored at the end.
        epochs: the most epochs to run.
        batch_size: the most rows a step; an epoch's rows are cut into equal batches of at most this many (full
            batches of it with `drop_last`).
        generator: shuffles the batches; on `x`'s device.
        evaluate: mean validation loss of the rows `x_val[part]`, called with slices of `batch_size` rows; with
            `x_val`, enables best-epoch restore and early stopping. A slice, not the rows: the caller keeps what it
            derives from `x_val` (an encoder's input, a packed target) across epochs instead of rebuilding it.
        patience: stop after this many epochs without a better validation loss (None: never stop early).
        progress: called after every epoch with a `Progress`: the one per-epoch hook (a progress bar, a
            cancellation check that raises to stop the fit).
        drop_last: skip a final short batch (PacGAN needs batches that are a multiple of its pack size).
        rows: indices of the rows of `x` to train on (`split_validation`'s); all rows when None.
        privacy: DP-SGD (`models.privacy.make_private`): batches are Poisson-sampled by its loader instead of shuffled
            slices, and training stops if the accountant ever reports more than the target epsilon.
        min_private_rows: with `privacy`, Poisson batches with fewer rows (e.g. less than one PacGAN pack) are skipped;
            the accountant is still charged for them.
        indices: pass `step` the batch's row indices into `x` (b,) instead of the gathered rows, for a step that
            picks its own rows (the gan draws real rows by level): a gather of random rows it would throw away costs
            more per row as the table outgrows the caches. When one batch holds every row of `x` (no `rows`, no
            `privacy`, `batch_size` >= n) the step gets `None` instead: every row, in stored order. A step's loss
            is a mean over its rows, so their order changes nothing, and the step can skip the shuffle and its
            gathers (on penguins, one batch an epoch, those were about a tenth of a vae step).

    Returns:
        The `History` of the run.
    """
    if rows is not None and privacy is not None:
        raise ValueError("DP-SGD samples its batches from every row of x: pass rows=None with privacy")
    if rows is not None:
        rows = rows.to(x.device)
    n = x.shape[0] if rows is None else rows.shape[0]
    batch_size = max(1, min(memory_batch_size(batch_size, x.shape[1], x.device), n))
    history = History()
    best_val, best_state, since_best = math.inf, None, 0
    start = time.perf_counter()
    # Train mode once, and again only after an evaluation: `Module.train()` walks every submodule through
    # `__setattr__`, a measurable share of a small table's one-step epoch.
    for m in modules.values():
        m.train()
    whole = indices and rows is None and privacy is None and batch_size >= n
    # Where each epoch's shuffled rows are cut into batches. With `drop_last`, full batches and the remainder left
    # out. Without it, equal batches (sizes differ by at most a row), so no small remainder's noisy gradient counts as
    # much as a full batch's: docs/decisions.md#vae-batch-size.
    if drop_last and n >= batch_size:
        bounds = list(range(0, n - n % batch_size + 1, batch_size))
    else:
        n_batches = -(-n // batch_size)
        bounds = [round(i * n / n_batches) for i in range(n_batches + 1)]
    for epoch in range(1, epochs + 1):
        if whole:  # one batch of every row, as stored (see `indices`)
            batches: Iterable[Tensor | None] = (None,)
        else:
            perm = torch.randperm(n, generator=generator, device=generator.device).to(x.device)  # (n,)
            if rows is not None:
                perm = rows[perm]  # positions in `x` of this epoch's shuffled training rows
            if privacy is None:
                batches = (perm[a:b] for a, b in itertools.pairwise(bounds))
            else:  # DP-SGD: Poisson sampling is what the accountant assumes (models/privacy.py)
                batches = (idx.to(x.device) for idx in privacy.batches(min_rows=min_private_rows))
            if not indices:
                # index_select, not x[index]: on CPU the advanced-indexing gather of a batch is slower.
                batches = (x.index_select(0, idx) for idx in batches)
        total = torch.zeros((), device=x.device)
        n_steps = 0
        for batch in batches:
            total = total + step(batch).detach().float()
            n_steps += 1
        history.loss.append(float(total) / max(n_steps, 1))  # one sync per epoch
        val = None
        if evaluate is not None and x_val is not None:
            for m in modules.values():
                m.eval()
            with torch.no_grad():  # in training-batch chunks: one pass over many rows is slower per row
                total_val = torch.zeros((), device=x_val.device)
                for i in range(0, x_val.shape[0], batch_size):
                    part = slice(i, min(i + batch_size, x_val.shape[0]))
                    total_val = total_val + evaluate(part).float() * (part.stop - part.start)
                val = float(total_val) / x_val.shape[0]
            for m in modules.values():
                m.train()
            history.val_loss.append(val)
            if val < best_val:
                best_val, since_best, history.best_epoch = val, 0, epoch
                best_state = {k: copy.deepcopy(m.state_dict()) for k, m in modules.items()}
            else:
                since_best += 1
        history.epochs_run = epoch
        elapsed = time.perf_counter() - start
        report = Progress(
            epoch=epoch,
            n_epochs=epochs,
            loss=history.loss[-1],
            val_loss=val,
            rows_per_s=epoch * n / max(elapsed, 1e-9),
            eta_s=elapsed / epoch * (epochs - epoch),
        )
        if progress is not None:
            progress(report)
        over_budget = privacy is not None and privacy.spent_epsilon() > privacy.epsilon * (1 + 1e-6)
        history.stopped_early = patience is not None and since_best >= patience
        if log_due(epoch, epochs) or over_budget or history.stopped_early:
            log_epoch(name, report)
        if over_budget:
            logger.warning("%s: privacy budget %.3g spent at epoch %d: stopping", name, privacy.epsilon, epoch)
            break
        if history.stopped_early:
            logger.info("%s: early stop at epoch %d (best %d)", name, epoch, history.best_epoch)
            break
    if best_state is not None:
        for k, m in modules.items():
            m.load_state_dict(best_state[k])
    else:
        history.best_epoch = history.epochs_run
    for m in modules.values():
        m.eval()
    history.seconds = time.perf_counter() - start
    return history


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """Seed the global RNGs (weight init, dropout, Gumbel noise) for the duration of a fit, then restore them.

    The caller's own random state is untouched afterwards, and two fits with the same seed on the same device give the
    same weights.
    """
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
