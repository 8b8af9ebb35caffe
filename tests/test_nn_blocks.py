"""The shared network blocks in `models/nn.py`: the CPU dropout, activating packed output, drawing from it."""

from __future__ import annotations

import pytest
import torch

from models.base import make_generator
from models.encoders.table import Span, TableEncoder
from models.nn import Dropout, SpanLayout
from schemas.table import infer_schema


def test_dropout_drops_the_asked_share_keeps_the_mean_and_is_identity_in_eval():
    # Arrange
    torch.manual_seed(0)
    layer = Dropout(0.5)
    x = torch.ones(200_000)

    # Act
    trained = layer.train()(x)
    evaluated = layer.eval()(x)

    # Assert: half dropped, the rest scaled by 2, so the expectation is unchanged; eval passes values through.
    assert (trained == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert set(trained.unique().tolist()) == {0.0, 2.0}
    assert trained.mean().item() == pytest.approx(1.0, abs=0.02)
    assert torch.equal(evaluated, x)
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.0)


def test_activate_applies_each_spans_activation_to_packed_output(penguins):
    # Arrange: random network outputs in packed order, and the same outputs in feature order.
    encoder = TableEncoder(infer_schema(penguins), normalization="mode").fit(penguins)
    layout = SpanLayout(encoder.spans_, encoder.n_features_)
    packed = torch.randn(64, layout.packed_width, generator=torch.Generator().manual_seed(0))
    squash = torch.zeros(layout.linear.numel(), dtype=torch.bool)
    squash[0] = True
    raw = layout.unpack(packed)

    # Act
    rows = layout.activate(packed, squash=squash)

    # Assert: span by span, in feature order: softmax over each one-hot group, sigmoid on flags, tanh where squashed.
    assert rows.shape == (64, encoder.n_features_)
    for span in encoder.spans_:
        part, got = raw[:, span.start : span.stop], rows[:, span.start : span.stop]
        if span.activation == "softmax":
            torch.testing.assert_close(got, torch.softmax(part, dim=1))
        elif span.activation == "sigmoid":
            torch.testing.assert_close(got, torch.sigmoid(part))
        elif span.start == layout.linear[0]:
            torch.testing.assert_close(got, torch.tanh(part))
        else:
            torch.testing.assert_close(got, part)


def test_draw_samples_modes_only_when_asked():
    # Arrange: one mode span whose output gives its two modes 30% and 70% in every row.
    layout = SpanLayout([Span("v", 0, 1, "linear", "value"), Span("v", 1, 2, "softmax", "mode")], 3)
    probs = torch.tensor([[0.0, 0.3, 0.7]]).expand(20_000, -1).contiguous()

    # Act
    argmax = layout.draw(probs, make_generator(0))
    drawn = layout.draw(probs, make_generator(0), draw_modes=True)

    # Assert: by default the likeliest mode every time (vae, autoencoder); drawn, the modelled frequencies (gan).
    assert argmax[:, 2].mean().item() == 1.0
    assert drawn[:, 2].mean().item() == pytest.approx(0.7, abs=0.015)
    assert torch.equal(drawn[:, 1] + drawn[:, 2], torch.ones(20_000))
