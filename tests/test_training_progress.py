"""Training progress: one log line every tenth of the epochs (Prefect's logs), a callback every epoch (the bar)."""

from __future__ import annotations

import io
import logging
import re

import pytest
from rich.console import Console

from synthgate.models.encoders.table import TableEncoder
from synthgate.models.vae import VAE, VAEConfig
from synthgate.schemas.table import infer_schema
from synthgate.tasks.train import fit_model, progress_bar

EPOCH_LINE = re.compile(r"vae: epoch (\d+)/(\d+) loss [-\d.]+ val_loss [-\d.]+, \d+ rows/s, ETA [\d.]+ s")


@pytest.fixture(scope="module")
def encoded(penguins):
    frame = penguins.dropna().reset_index(drop=True)
    encoder = TableEncoder(infer_schema(frame)).fit(frame)
    return encoder, encoder.transform(frame)


def _logged_epochs(caplog) -> list[int]:
    lines = [r.getMessage() for r in caplog.records if r.name == "synthgate.models.training"]
    return [int(m.group(1)) for m in map(EPOCH_LINE.fullmatch, lines) if m]


def test_a_fit_logs_every_tenth_of_its_epochs_and_calls_back_every_epoch(encoded, caplog):
    # Arrange
    encoder, x = encoded
    reports = []

    # Act
    with caplog.at_level(logging.INFO, logger="synthgate.models.training"):
        VAE(VAEConfig(epochs=30, patience=None), spans=encoder.spans_).fit(x, progress=reports.append)

    # Assert: ten formatted lines (epochs 3, 6, ..., 30), no repr of a report, and one callback per epoch.
    assert _logged_epochs(caplog) == list(range(3, 31, 3))
    assert not any("Progress(" in r.getMessage() for r in caplog.records)
    assert [r.epoch for r in reports] == list(range(1, 31))
    assert reports[-1].eta_s == 0.0 and all(r.rows_per_s > 0 for r in reports)


def test_an_early_stop_logs_the_epoch_it_stopped_at(encoded, caplog):
    # Arrange: a learning rate so small that the validation loss barely moves, and no patience at all.
    encoder, x = encoded

    # Act
    with caplog.at_level(logging.INFO, logger="synthgate.models.training"):
        model = VAE(VAEConfig(epochs=50, patience=0, lr=1e-9), spans=encoder.spans_).fit(x)

    # Assert: the last line is the stopping epoch, though it is not a tenth of 50.
    assert model.history_.stopped_early
    assert _logged_epochs(caplog)[-1] == model.history_.epochs_run < 50


def test_the_task_shows_a_bar_only_on_a_terminal_and_passes_every_epoch_on(encoded, capsys):
    # Arrange
    encoder, x = encoded
    seen = []

    # Act: pytest's stderr is no terminal, so no bar is drawn.
    fit_model(x, model="vae", spans=encoder.spans_, device="cpu", options={"epochs": 4}, progress=seen.append)
    quiet = capsys.readouterr().err
    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    with progress_bar("vae", console=terminal) as bar:  # a terminal of its own
        for report in seen:
            bar(report)
    drawn = terminal.file.getvalue()

    # Assert
    assert [r.epoch for r in seen] == [1, 2, 3, 4]
    assert "training vae" not in quiet
    assert "training vae" in drawn and "4/4" in drawn


def test_a_callback_that_raises_stops_the_fit(encoded):
    # Arrange: the per-epoch hook is where a cancellation check runs.
    encoder, x = encoded

    def cancel(report):
        if report.epoch == 2:
            raise KeyboardInterrupt

    # Act / Assert
    with pytest.raises(KeyboardInterrupt):
        VAE(VAEConfig(epochs=10), spans=encoder.spans_).fit(x, progress=cancel)


def test_only_a_cuda_fit_asks_for_a_gpu_slot(monkeypatch):
    """A CPU fit runs untagged (no concurrency-slot request to the server); a CUDA fit carries the `gpu` tag that
    `synthgate setup --gpu-slots N` limits."""
    import torch

    from synthgate.tasks.train import GPU_TAG, fit_model_task, on_device

    assert on_device(fit_model_task, "cpu").tags == set()
    assert on_device(fit_model_task, "auto").tags == ({GPU_TAG} if torch.cuda.is_available() else set())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert on_device(fit_model_task, "cuda").tags == {GPU_TAG}
    assert on_device(fit_model_task, "auto").tags == {GPU_TAG}
    assert fit_model_task.tags == set()  # the module's task is left as it was
