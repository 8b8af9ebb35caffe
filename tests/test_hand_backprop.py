"""The hand-written gradients (moment matching, the gan's closed-form penalty, the mlp and residual backward passes)
against autograd: same losses, same gradients, same trained weights."""

from __future__ import annotations

import importlib
from dataclasses import replace

import pytest
import torch

from synthgate.models.autoencoder import Autoencoder, AutoencoderConfig
from synthgate.models.gan import GAN, GANConfig
from synthgate.models.vae import VAE, VAEConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HAND_BACKPROP = {"vae": (VAE, VAEConfig), "autoencoder": (Autoencoder, AutoencoderConfig)}


@pytest.mark.parametrize("projected", [False, True])
def test_moment_matching_by_hand_equals_autograd(small_encoded, projected):
    # Arrange: real encoded penguins and a perturbed batch of other rows as the fakes; wide rows are matched through a
    # random projection (here to 16 directions)
    from synthgate.models.moments import moment_matching_by_hand, moment_matching_loss

    _, x = small_encoded
    draw = torch.Generator().manual_seed(0)
    real = x[:160]
    fake = (x[100:260] + 0.3 * torch.randn(160, x.shape[1], generator=draw)).requires_grad_()
    projection = torch.randn(x.shape[1], 16, generator=draw) / 4 if projected else None

    # Act
    loss = moment_matching_loss(fake, real, projection)
    (expected,) = torch.autograd.grad(2.5 * loss, fake)
    d_fake = torch.ones_like(real[:160])  # the critic's gradient already there: the matching adds to it
    by_hand = moment_matching_by_hand(fake.detach(), real, 2.5, d_fake, projection)

    # Assert: same loss and gradient; a batch matched against itself has neither
    assert by_hand.item() == pytest.approx(2.5 * loss.item(), rel=1e-5)
    torch.testing.assert_close(d_fake - 1, expected, rtol=1e-4, atol=1e-6)
    assert moment_matching_loss(real, real, projection).item() == pytest.approx(0.0, abs=1e-10)


def test_wide_rows_are_matched_through_a_fresh_projection_each_call():
    from synthgate.models.moments import MOMENT_EXACT_WIDTH, MOMENT_SKETCH, moment_projection

    narrow = moment_projection(MOMENT_EXACT_WIDTH, torch.device("cpu"))
    first, second = (moment_projection(MOMENT_EXACT_WIDTH + 1, torch.device("cpu")) for _ in range(2))

    assert narrow is None
    assert first.shape == (MOMENT_EXACT_WIDTH + 1, MOMENT_SKETCH) and not torch.equal(first, second)
    assert (first * first).sum(1).mean().item() == pytest.approx(1.0, abs=0.05)  # E[P P^T] = I: unit row norms


@pytest.mark.slow
def test_moment_matching_reads_real_rows_only_without_dp(small_encoded, monkeypatch):
    # Arrange: count the matching's calls on both generator paths
    import synthgate.models.gan as gan_module

    calls = []
    import synthgate.models.gan_backprop as backprop_module

    for module, name in ((gan_module, "moment_matching_loss"), (backprop_module, "moment_matching_by_hand")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *args, real=real: calls.append(1) or real(*args))
    encoder, x = small_encoded

    # Act
    GAN(GANConfig(epochs=2, batch_size=100), spans=encoder.spans_).fit(x)
    plain = len(calls)
    GAN(GANConfig(epochs=2, batch_size=100, epsilon=10.0), spans=encoder.spans_).fit(x)

    # Assert: one matching a generator step without DP-SGD; none with it (the generator may not see real rows)
    assert plain == 2 * (x.shape[0] // 100)
    assert len(calls) == plain


@pytest.mark.parametrize("dropout", [0.5, 0.0])
def test_gan_closed_form_penalty_matches_autograds_double_backward(dropout, small_encoded):
    # Arrange: a critic over real encoded penguins (with their cond vectors) and generator output as the fakes.
    encoder, x = small_encoded
    gan = GAN(GANConfig(critic_dropout=dropout), spans=encoder.spans_, device="cpu")
    gan._setup(x.shape[1], torch.device("cpu"))
    gan.cond_.fit_counts(x)
    level, rows = gan.cond_.draw_training(100)
    real, cond = x[rows], gan.cond_.one_hot(level)
    _, fake = gan._generate(torch.randn(100, gan.config.noise_dim), cond, tau=0.2)
    weights = [gan.critic_[0].weight, gan.critic_[-1].weight]

    # Act: the same random draws (mixing weights, dropout mask) for both.
    torch.manual_seed(3)
    reference = 4 * gan._gradient_penalty(real, fake.detach(), cond)
    *expected, bias_grad = torch.autograd.grad(reference, [*weights, gan.critic_[0].bias])
    torch.manual_seed(3)
    penalty, pairs = gan._penalty_by_hand(real, fake.detach(), cond, 4)

    # Assert: same penalty and same weight gradients, to float rounding; the biases get none from autograd either.
    assert penalty.item() == pytest.approx(reference.item(), rel=1e-5)
    assert all(param is weight for (param, _), weight in zip(pairs, weights, strict=True))
    for (_, got), want in zip(pairs, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert bias_grad.abs().max() == 0


@pytest.mark.parametrize("name", ["vae", "autoencoder"])
def test_hand_written_gradients_train_the_weights_autograd_would(name, small_encoded, monkeypatch):
    # Arrange: count the hand-written backward passes, to know which path each fit took.
    module = importlib.import_module(f"synthgate.models.{name}")
    calls = []
    real = module.mlp_backward
    monkeypatch.setattr(module, "mlp_backward", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    encoder, x = small_encoded
    model_class, config_class = HAND_BACKPROP[name]
    config = config_class(epochs=3)

    # Act: the default CPU fit, then the same fit through autograd (the `hand_backprop` switch off).
    by_hand = model_class(config, spans=encoder.spans_).fit(x)
    hand_calls = len(calls)
    by_autograd = model_class(replace(config, hand_backprop=False), spans=encoder.spans_).fit(x)

    # Assert: the first fit took the hand-written path and the second did not; both trained the same weights.
    assert hand_calls > 0 and len(calls) == hand_calls
    for a, b in zip(by_hand.module_.parameters(), by_autograd.module_.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert by_hand.history_.loss == pytest.approx(by_autograd.history_.loss, rel=1e-5)


@pytest.mark.parametrize("sketch", [None, 32])
def test_gan_hand_written_gradients_train_the_weights_autograd_would(small_encoded, monkeypatch, sketch):
    # Arrange: count the hand-written generator backward passes, to know which path each fit took; the default
    # networks (residual generator, one-hidden-layer critic) and lazy penalty steps among the three epochs. With a
    # sketch narrower than penguins' 57 features, the moment matching goes through random projections (drawn in the
    # same order on both paths).

    if sketch:
        import synthgate.models.moments as moments_module

        monkeypatch.setattr(moments_module, "MOMENT_EXACT_WIDTH", sketch)
        monkeypatch.setattr(moments_module, "MOMENT_SKETCH", sketch)
    import synthgate.models.gan_backprop as backprop_module

    calls = []
    real = backprop_module.residual_backward
    monkeypatch.setattr(backprop_module, "residual_backward", lambda *args: calls.append(1) or real(*args))
    encoder, x = small_encoded
    # The critic at the generator's rate: Adam turns a float-rounding difference in a near-zero gradient into a step
    # of up to lr, and the default critic's 4x rate made two of 30,720 weights differ by 7e-5 after three epochs.
    config = GANConfig(epochs=3, batch_size=100, lr=5e-4, critic_lr=None)

    # Act: the default CPU fit, then the same fit through autograd (the `hand_backprop` switch off).
    by_hand = GAN(config, spans=encoder.spans_).fit(x)
    hand_calls = len(calls)
    by_autograd = GAN(replace(config, hand_backprop=False), spans=encoder.spans_).fit(x)

    # Assert: the first fit took the hand-written path (one generator backward a step) and the second did not; both
    # trained the same generator (BatchNorm statistics included) and critic. The generator's first bias feeds a
    # BatchNorm, which cancels it: its true gradient is 0, so Adam steps it along float rounding, which differs
    # between the two paths (as do the running means it shifts); it is compared loosely.
    assert hand_calls == 3 * (x.shape[0] // 100) and len(calls) == hand_calls
    for net in ("generator_", "critic_"):
        states = [getattr(model, net).state_dict() for model in (by_hand, by_autograd)]
        for key, value in states[0].items():
            cancelled = key in ("blocks.0.0.bias", "blocks.0.1.running_mean")
            torch.testing.assert_close(value, states[1][key], rtol=1e-4, atol=1e-3 if cancelled else 1e-5)
    assert by_hand.history_.loss == pytest.approx(by_autograd.history_.loss, rel=1e-4)
