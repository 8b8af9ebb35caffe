"""The shared network blocks in `models/nn.py`: the CPU dropout, activating packed output, drawing from it."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from synthgate.models.backprop import (
    mlp_backward,
    mlp_forward,
    residual_backward,
    residual_forward,
    supports_hand_backprop,
)
from synthgate.models.base import make_generator
from synthgate.models.encoders.table import Span, TableEncoder
from synthgate.models.layout import SpanLayout, TrainingRows
from synthgate.models.nn import MLP, Dropout, NarrowInputLinear, ResidualGenerator
from synthgate.models.optim import FusedAdam
from synthgate.schemas.table import infer_schema


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


def test_fused_adam_steps_like_torch_adam_and_survives_a_state_reload():
    # Arrange: two copies of one network, one stepped by torch's fused Adam and one by ours, on the same gradients.
    torch.manual_seed(0)
    ours_net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    torch_net = copy.deepcopy(ours_net)
    options = {"lr": 1e-2, "betas": (0.5, 0.9), "weight_decay": 1e-3}
    ours = FusedAdam(ours_net.parameters(), fused=True, **options)
    reference = torch.optim.Adam(torch_net.parameters(), fused=True, **options)
    batches = [torch.randn(32, 6) for _ in range(6)]

    # Act: the first steps build the cached lists, then a reload of the state must not leave them stale.
    for i, batch in enumerate(batches):
        for net, opt in ((ours_net, ours), (torch_net, reference)):
            opt.zero_grad(set_to_none=True)
            net(batch).pow(2).mean().backward()
            opt.step()
        if i == 2:
            ours.load_state_dict(copy.deepcopy(ours.state_dict()))

    # Assert: the same weights and optimiser state to the last bit (stale cached lists would have left the reloaded
    # state behind), and the direct path was taken.
    assert ours._fused_lists is not None
    for a, b in zip(ours_net.parameters(), torch_net.parameters(), strict=True):
        assert torch.equal(a, b)
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(ours.state[a][key], reference.state[b][key])


@pytest.mark.slow
def test_fitting_the_neural_families_never_imports_torch_dynamo():
    # Arrange: a fresh interpreter (another test may have imported it); dynamo's import costs seconds of every fit
    script = """
import sys
import numpy as np, pandas as pd
from synthgate.tasks.synthesizer import Synthesizer
rng = np.random.default_rng(0)
df = pd.DataFrame({"x": rng.normal(size=200), "g": rng.choice(list("abc"), 200)})
for model in ("arn", "vae", "gan"):
    Synthesizer(model, seed=0, model_options={"epochs": 2}).fit(df)
print("torch._dynamo" in sys.modules)
"""

    # Act
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)

    # Assert
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_narrow_input_linear_matches_nn_linear_forward_backward_and_state():
    # Arrange: the same weights in both, the vae decoder's shape (latent 8 -> 128 units).
    torch.manual_seed(0)
    narrow, plain = NarrowInputLinear(8, 128), torch.nn.Linear(8, 128)
    plain.load_state_dict(narrow.state_dict())
    x = torch.randn(1000, 8, requires_grad=True)
    x_plain = x.detach().clone().requires_grad_(True)
    grad = torch.randn(1000, 128)

    # Act
    out, out_plain = narrow(x), plain(x_plain)
    out.backward(grad)
    out_plain.backward(grad)

    # Assert: same output and gradients to float rounding (products summed in another order), same parameters.
    torch.testing.assert_close(out, out_plain)
    torch.testing.assert_close(x.grad, x_plain.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(narrow.weight.grad, plain.weight.grad, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(narrow.bias.grad, plain.bias.grad)
    assert narrow.state_dict().keys() == plain.state_dict().keys()
    assert isinstance(MLP(8, (16,), 4)[0], NarrowInputLinear)  # under DP-SGD the models pass narrow=False
    assert type(MLP(8, (16,), 4, narrow=False)[0]) is torch.nn.Linear
    assert type(MLP(32, (16,), 4)[0]) is torch.nn.Linear


def test_fold_modes_replaces_each_mode_one_hot_by_its_rank_and_keeps_every_other_feature(penguins):
    # Arrange: encoded penguins, whose four measurements each get a value, a mode one-hot and a missing flag.
    encoder = TableEncoder(infer_schema(penguins), normalization="mode").fit(penguins)
    x = encoder.transform(penguins)
    layout = SpanLayout(encoder.spans_, encoder.n_features_)
    mode_spans = [s for s in encoder.spans_ if s.role == "mode"]

    # Act
    folded = layout.fold_modes(x)

    # Assert: one column per mode span instead of its width, holding the chosen mode's rank in [-1, 1] exactly.
    assert len(mode_spans) == 4
    assert folded.shape == (len(penguins), x.shape[1] - sum(s.width - 1 for s in mode_spans))
    column = 0
    for span in encoder.spans_:
        part = x[:, span.start : span.stop]
        if span.role == "mode":
            rank = torch.linspace(-1, 1, span.width)[part.argmax(1)]
            assert torch.equal(folded[:, column], rank)
            column += 1
        else:
            assert torch.equal(folded[:, column : column + span.width], part)
            column += span.width
    assert column == layout.folded_width


@pytest.fixture(scope="module")
def penguins_layout(penguins) -> tuple[TableEncoder, SpanLayout]:
    """The mode-normalised penguins encoder and its layout, which has all three kinds of span (values, missing flags,
    one-hot groups)."""
    encoder = TableEncoder(infer_schema(penguins), normalization="mode").fit(penguins)
    layout = SpanLayout(encoder.spans_, encoder.n_features_)
    assert layout.linear.numel() and layout.sigmoid.numel() and layout.soft_spans
    return encoder, layout


@pytest.mark.parametrize("with_sigma", [True, False])
def test_packed_loss_grad_gives_the_loss_and_the_gradients_autograd_computes(with_sigma, penguins, penguins_layout):
    # Arrange
    encoder, layout = penguins_layout
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(50, layout.packed_width, generator=gen).requires_grad_()
    target = layout.pack(encoder.transform(penguins)[:50])
    log_sigma = (0.3 * torch.randn(layout.linear.numel(), generator=gen)).requires_grad_() if with_sigma else None
    loss = layout.packed_loss(out, target, log_sigma)
    loss.backward()

    # Act
    by_hand, d_out, d_log_sigma = layout.packed_loss_grad(
        out.detach(), target, None if log_sigma is None else log_sigma.detach()
    )

    # Assert
    torch.testing.assert_close(by_hand, loss.detach())
    torch.testing.assert_close(d_out, out.grad)
    if with_sigma:
        torch.testing.assert_close(d_log_sigma, log_sigma.grad)
    else:
        assert d_log_sigma is None


@pytest.mark.parametrize(
    ("d_in", "norm", "activation"),
    [(8, False, torch.nn.ReLU), (30, False, torch.nn.ReLU), (30, True, torch.nn.ReLU), (30, False, torch.nn.LeakyReLU)],
)  # narrow and plain first layers; the gan critic's LeakyReLU
def test_mlp_backward_sets_the_contiguous_gradients_autograd_computes(d_in, norm, activation):
    # Arrange: a two-hidden-layer network and the gradient of a weighted sum of its output. Its first layer widens
    # to 128 units, whose weight gradient is computed transposed; its second narrows to 32, computed as is.
    torch.manual_seed(0)
    network = MLP(d_in, (128, 32), 20, norm=norm, activation=activation)
    x = torch.randn(40, d_in).requires_grad_()
    weights = torch.randn(40, 20)
    expected_out = network(x)
    (expected_out * weights).sum().backward()
    expected = [p.grad.clone() for p in network.parameters()]
    network.zero_grad(set_to_none=True)

    # Act
    out, saved = mlp_forward(network, x.detach())
    d_x = mlp_backward(network, saved, weights, input_grad=True)

    # Assert: the same output and gradients, contiguous (the fused Adam kernel misreads a transposed gradient).
    torch.testing.assert_close(out, expected_out.detach())
    torch.testing.assert_close(d_x, x.grad)
    for p, grad in zip(network.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, grad)
        assert p.grad.is_contiguous()
    assert mlp_backward(network, saved, weights, input_grad=False) is None
    # Only the input's gradient (the gan's generator step through its critic): every `.grad` is left as it was.
    network.zero_grad(set_to_none=True)
    torch.testing.assert_close(mlp_backward(network, saved, weights, input_grad=True, param_grads=False), x.grad)
    assert all(p.grad is None for p in network.parameters())


def test_residual_backward_sets_the_gradients_and_batch_norm_state_autograd_would():
    # Arrange: the gan's generator (two residual BatchNorm blocks) in training mode, twice with the same weights.
    torch.manual_seed(0)
    network = ResidualGenerator(12, (32, 16), 20).train()
    twin = copy.deepcopy(network)
    x = torch.randn(40, 12)
    weights = torch.randn(40, 20)
    expected_out = twin(x)
    (expected_out * weights).sum().backward()

    # Act
    out, saved = residual_forward(network, x)
    residual_backward(network, saved, weights)

    # Assert: same output, gradients, and BatchNorm running statistics and batch counts.
    torch.testing.assert_close(out, expected_out.detach())
    for (name, p), q in zip(network.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
        assert p.grad.is_contiguous()
    for (name, a), b in zip(network.state_dict().items(), twin.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize("tau", [None, 0.2])  # sampling's activations, the gan's training relaxations
def test_activate_backward_gives_the_gradient_autograd_computes(tau, penguins_layout):
    # Arrange: packed output with values (half squashed by tanh), flags and softmax spans.
    _, layout = penguins_layout
    gen = torch.Generator().manual_seed(0)
    packed = torch.randn(30, layout.packed_width, generator=gen).requires_grad_()
    squash = torch.arange(layout.linear.numel()) % 2 == 0
    d_rows = torch.randn(30, layout.n_features, generator=gen)
    torch.manual_seed(1)  # the relaxations' noise: the same draws for both
    expected_rows = layout.activate(packed, tau=tau, squash=squash)
    (expected_rows * d_rows).sum().backward()

    # Act
    torch.manual_seed(1)
    parts = layout.activate_parts(packed.detach(), tau=tau, squash=squash)
    d_packed = layout.activate_backward(parts, d_rows, tau=tau, squash=squash)

    # Assert: the same rows, and the same gradient (0 on the padding slots).
    torch.testing.assert_close(layout.unpack(torch.cat(parts, dim=1)), expected_rows.detach())
    torch.testing.assert_close(d_packed, packed.grad)


def test_hand_backprop_is_only_offered_for_the_layers_it_implements():
    assert supports_hand_backprop(MLP(8, (16, 16), 4, norm=False))
    assert supports_hand_backprop(MLP(8, (16,), 4, norm=True))
    assert supports_hand_backprop(MLP(8, (16,), 4, norm=False, activation=torch.nn.LeakyReLU))
    assert supports_hand_backprop(ResidualGenerator(8, (16,), 4))
    assert not supports_hand_backprop(MLP(8, (16,), 4, norm=False, dropout=0.5))
    assert not supports_hand_backprop(MLP(8, (16,), 4, activation=torch.nn.Tanh))


def test_training_rows_gather_a_batch_and_give_every_row_unchanged_without_an_index(penguins, penguins_layout):
    # Arrange
    encoder, layout = penguins_layout
    x = encoder.transform(penguins)
    rows = TrainingRows(layout, x, fold_modes=True)
    index = torch.tensor([5, 0, 17])

    # Act
    inputs, packed = rows.take(index)
    all_inputs, all_packed = rows.take(None)

    # Assert: the batch is those rows in both forms; None is the whole table, packed once
    assert torch.equal(packed, layout.pack(x[index]))
    assert torch.equal(inputs, layout.encoder_input(x, True)[index])
    assert torch.equal(all_packed, layout.pack(x)) and torch.equal(all_inputs, layout.encoder_input(x, True))
    assert rows.take(None)[1] is all_packed


def test_marginal_output_activates_to_the_column_marginals(penguins, penguins_layout):
    # Arrange: the encoded penguins (values, missing flags, levels and modes)
    encoder, layout = penguins_layout
    mean = encoder.transform(penguins).mean(0)

    # Act: the same raw output for every row, activated as a decoder's would be
    rows = layout.activate(layout.marginal_output(mean).expand(4, -1))

    # Assert: every row is the marginals: the values' means, the flags' rates, each level's and mode's share (a mode
    # that holds no row, as one of bill_length_mm's, comes back at the 1e-4 floor)
    assert (mean[layout.soft_flat] == 0).any()
    torch.testing.assert_close(rows, mean.expand(4, -1), rtol=0, atol=2e-4)


@pytest.mark.parametrize("log", [False, True])
def test_softmax_last_pads_large_narrow_blocks_to_the_same_result(log):
    # Arrange: a block big enough to be padded (5 wide, under SOFTMAX_MIN_WIDTH), one too small to be, one wide
    from synthgate.models.layout import SOFTMAX_MIN_WIDTH, SOFTMAX_PAD_MIN_VALUES, softmax_last

    gen = torch.Generator().manual_seed(0)
    blocks = [
        torch.randn(SOFTMAX_PAD_MIN_VALUES // 15 + 1, 3, 5, generator=gen) * 4,
        torch.randn(10, 3, 5, generator=gen),
        torch.randn(10, 3, SOFTMAX_MIN_WIDTH + 1, generator=gen),
    ]
    reference = torch.log_softmax if log else torch.softmax

    # Act / Assert: the same values and shape as PyTorch's own, whichever path a block takes
    for block in blocks:
        got = softmax_last(block, log=log)
        assert got.shape == block.shape
        torch.testing.assert_close(got, reference(block, dim=-1))
