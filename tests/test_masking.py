"""Gradient-masking checks: deliberately masked models raise the warnings, an honest one none."""

import torch
from torch import nn

from robustlab.eval import masking
from robustlab.models import create_model


def honest_model():
    torch.manual_seed(0)
    return create_model("small_cnn", num_classes=10, in_channels=1, image_size=28, width=8,
                        embedding_dim=32).eval()


class Scaled(nn.Module):
    """Logits x 1e4: the softmax saturates and CE gradients underflow to exactly zero."""

    def __init__(self, model, scale=1e4):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x):
        return self.model(x) * self.scale


class Quantized(nn.Module):
    """A hard step on the input (4 grey levels): zero gradient almost everywhere."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 3) / 3)


class Softmaxed(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).softmax(1)


class Noisy(nn.Module):
    """Random noise on the input even in eval mode (a randomised defense)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x + 0.1 * torch.randn_like(x))


def batch(model, n=32):
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)  # labels the model gets right: CE is small everywhere
    return x, y


def statuses(checks):
    return {c.name: c.status for c in checks}


def test_honest_model_passes_every_probe():
    model = honest_model()
    x, y = batch(model)
    checks = masking.probe(model, x, y)
    assert statuses(checks) == {"zero_gradients": "pass", "randomness": "pass",
                                "probability_outputs": "pass"}
    assert masking.verdict(checks).startswith("No sign of gradient masking")
    assert model.training is False and all(p.requires_grad for p in model.parameters())


def test_scaled_logits_give_zero_gradients():
    model = Scaled(honest_model())
    x, y = batch(model)
    check = masking.zero_gradients(model, x, y)
    assert check.status == "warn" and check.numbers["zero_fraction"] > 0.5


def test_hard_input_step_gives_zero_gradients():
    model = Quantized(honest_model())
    x, y = batch(model)
    assert masking.zero_gradients(model, x, y).numbers["zero_fraction"] == 1.0


def test_softmax_output_and_randomness_are_flagged():
    softmaxed = Softmaxed(honest_model())
    x, y = batch(softmaxed)
    assert statuses(masking.probe(softmaxed, x, y))["probability_outputs"] == "warn"
    noisy = Noisy(honest_model())
    assert masking.randomness(noisy, x).status == "warn"


def test_result_checks_warn_and_pass():
    assert masking.iterative_vs_single_step(single=0.30, iterative=0.45).status == "warn"
    assert masking.iterative_vs_single_step(single=0.30, iterative=0.10).status == "pass"
    assert masking.large_eps(0.35, eps=0.5, num_classes=10).status == "warn"
    assert masking.large_eps(0.05, eps=0.5, num_classes=10).status == "pass"
    assert masking.more_steps({1: 0.5, 10: 0.3, 100: 0.42}).status == "warn"
    assert masking.more_steps({1: 0.5, 10: 0.3, 100: 0.295}).status == "pass"
    assert masking.more_steps({10: 0.3}).status == "skip"
    white = torch.tensor([True, False, False, False] * 250)
    black = white.clone()
    black[1] = black[5] = black[9] = True  # 3 of 1000 only broken by the black-box attack
    assert masking.black_box_vs_white_box(white, black).status == "warn"
    black[5] = black[9] = False  # 1 in 1000 = 0.1%: within the 0.2% allowance
    assert masking.black_box_vs_white_box(white, black).status == "pass"
    assert masking.gradient_free_vs_gradient(gradient_free=0.2, gradient=0.4).status == "warn"
    assert masking.gradient_free_vs_gradient(gradient_free=0.45, gradient=0.4).status == "pass"
    assert masking.autoattack_vs_pgd(autoattack=0.30, pgd=0.40).status == "warn"
    assert masking.autoattack_vs_pgd(autoattack=0.37, pgd=0.40).status == "pass"


def test_verdict_names_the_warnings_in_plain_words():
    checks = [masking.autoattack_vs_pgd(0.30, 0.40), masking.large_eps(0.05, 0.5, 10)]
    text = masking.verdict(checks)
    assert text.startswith("Robustness is probably overstated by gradient masking")
    assert "autoattack_vs_pgd" in text and "large_eps" not in text
    assert checks[0].to_dict()["numbers"] == {"autoattack": 0.30, "pgd": 0.40}


def test_a_trained_honest_model_raises_no_warning(trained_fmnist):
    model, x, y = trained_fmnist
    checks = masking.probe(model, x[:200], y[:200])
    assert all(c.status == "pass" for c in checks), [c.message for c in checks if c.status != "pass"]
