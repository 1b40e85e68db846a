"""The Cascade paper (Na et al. 2018): the unified-embedding loss and distances against hand values,
the B' batch, the truncated-normal eps, the saved image bank, cascade training end to end, and the
error-surface and transfer analyses."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import robustlab.experiment as experiment
import robustlab.experiment.training as training
from robustlab.analysis import (
    gradient_correlation,
    label_leaking,
    pearson,
    softmax_arguments,
    transfer_matrix,
)
from robustlab.attacks import ATTACKS, sign_step
from robustlab.attacks.image_bank import ImageBank, SourceImages, make_bank
from robustlab.config import load_config
from robustlab.defenses import TERMS, Step, build_objective
from robustlab.defenses.adversaries import CascadeAdversary, RandomEpsOneStep, random_eps
from robustlab.errors import UserError
from robustlab.models import Out, create_model

TINY = ["data.name=synthetic", "data.options={train_size: 256, test_size: 128}", "data.batch_size=32",
        "model.options={width: 8, embedding_dim: 32}", "train.epochs=1", "train.monitor_images=0",
        "defense.eps=0.1"]


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def fixed_step(y, k, augmented) -> Step:
    """A step whose k adversarial images and B' outputs are given (no model runs)."""
    y = torch.tensor(y)
    step = Step(nn.Identity(), torch.zeros(len(y), 1), y, forward_all=lambda x: None)
    step.__dict__["x_adv"] = torch.zeros(k, 1)
    step.__dict__["augmented"] = augmented
    return step


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return create_model("small_cnn", num_classes=10, in_channels=1, image_size=28, width=8,
                        embedding_dim=32).eval()


# ---- loss terms ------------------------------------------------------------------------------

def test_unified_ce_hand_computed():
    # B = 2 clean + k = 1 adversarial; logits [0, 0] give CE ln 2 each, [ln 3, 0] for y = 0 gives
    # ln(4/3). B' = [adv; clean0; clean1] with the adversarial row CE ln(4/3), the clean ones ln 2:
    # (ln 2 + ln 2 + 0.3 ln(4/3)) / (2 + 0.3 * 1)   (Cascade Sec. 3.1)
    logits = t([[math.log(3), 0], [0, 0], [0, 0]])
    step = fixed_step([0, 1], 1, Out(logits, None, None))
    expected = (2 * math.log(2) + 0.3 * math.log(4 / 3)) / 2.3
    assert TERMS.get("unified_ce")(step, lam=0.3).item() == pytest.approx(expected)


def test_embedding_distance_hand_computed():
    # k = 2 pairs in 10-d logits: adv rows 0-1, their clean originals rows 2-3, row 4 another clean.
    e = torch.zeros(5, 10, dtype=torch.float64)
    e[0, 0], e[2, 0] = 3.0, 1.0          # |3 - 1|^N
    e[1, 1], e[3, 2] = 1.0, -2.0         # |1 - 0|^N + |0 + 2|^N
    e[4] = 100.0                         # not paired: must not count
    step = fixed_step([0, 1, 2], 2, Out(e, None, None))
    term = TERMS.get("embedding_distance")
    assert term(step, power=2).item() == pytest.approx(4 + 1 + 4)
    assert term(step, power=1).item() == pytest.approx(2 + 1 + 2)
    # on a 20-d embedding the sum is scaled by 10 / 20 (the paper's lambda2 is for 10-d logits)
    wide = torch.cat([e, torch.zeros(5, 10, dtype=torch.float64)], 1)
    step = fixed_step([0, 1, 2], 2, Out(None, wide, None))
    assert term(step, power=2, on="embedding").item() == pytest.approx(9 / 2)


@pytest.mark.parametrize("pivot", [False, True])
def test_pivot_sends_no_gradient_into_the_clean_embedding(pivot):
    e = torch.randn(6, 10, dtype=torch.float64, requires_grad=True)  # k = 2: adv 0-1, clean 2-5
    step = fixed_step([0, 1, 2, 3], 2, Out(e, None, None))
    TERMS.get("embedding_distance")(step, pivot=pivot).backward()
    assert e.grad[:2].abs().sum() > 0                 # the adversarial embeddings always move
    clean_moves = e.grad[2:4].abs().sum() > 0
    assert clean_moves == (not pivot)                 # bidirectional: the clean ones move too
    assert e.grad[4:].abs().sum() == 0                # unpaired clean images take no distance gradient


def test_embedding_distance_rejects_bad_options():
    step = fixed_step([0], 1, Out(torch.zeros(2, 10), torch.zeros(2, 4), None))
    with pytest.raises(UserError, match="on='features'"):
        TERMS.get("embedding_distance")(step, on="features")
    with pytest.raises(UserError, match="power"):
        TERMS.get("embedding_distance")(step, power=0)


# ---- the batch -------------------------------------------------------------------------------

def test_batch_is_m_minus_k_clean_plus_k_adversarial():
    model = tiny_model()
    seen = []

    def forward_all(x):
        seen.append(x.detach().clone())
        return model.forward_all(x)

    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    objective = build_objective("pivot", eps=0.1, adv_fraction=0.5)
    step = Step(model, x, y, forward_all=forward_all, adversary=objective.adversary)
    objective(step)
    (batch,) = seen                                   # one forward: Alg. 1 line 5
    assert len(batch) == 8 + 4                        # m = (m - k) + k with k = 4 added, none replaced
    assert torch.equal(batch[4:], x)                  # every clean image is there
    assert not torch.equal(batch[:4], x[:4])          # the first k rows are their adversarial versions
    assert (batch[:4] - x[:4]).abs().amax() <= 0.1 + 1e-6
    assert torch.equal(step.y_augmented, torch.cat([y[:4], y]))


def test_random_eps_never_leaves_the_interval_and_is_a_truncated_half_normal():
    torch.manual_seed(0)
    eps = random_eps(200_000, 0.1, torch.zeros(1))
    assert eps.min() >= 0 and eps.max() <= 0.1
    # N(0, sigma) truncated to [0, 2 sigma]: mean sigma sqrt(2/pi) (1 - e^-2) / erf(sqrt 2) = 0.7228 sigma
    sigma = 0.05
    expected = sigma * math.sqrt(2 / math.pi) * (1 - math.exp(-2)) / math.erf(math.sqrt(2))
    assert eps.double().mean().item() == pytest.approx(expected, rel=0.01)
    assert (eps == 0.1).float().mean() < 0.001        # truncated, not clipped: no mass piled at max_e


def test_random_eps_one_step_gives_each_image_its_own_size():
    model = tiny_model()
    torch.manual_seed(1)
    x, y = torch.rand(16, 1, 28, 28) * 0.5 + 0.25, torch.arange(16) % 10   # away from the box edges
    x_adv = RandomEpsOneStep("step_ll", max_eps=0.1, fraction=1.0)(model, x, y)
    sizes = (x_adv - x).flatten(1).abs().amax(1)
    assert sizes.max() <= 0.1 + 1e-6
    assert len(sizes.unique()) > 8                    # per-image eps, not one shared eps
    direction = sign_step("step_ll", model, x, y)
    torch.testing.assert_close(x_adv, (x + sizes.view(-1, 1, 1, 1) * direction).clamp(0, 1))


# ---- the saved image bank --------------------------------------------------------------------

def uint8_images(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8), torch.arange(n) % 10


def test_bank_holds_the_attack_exactly_and_is_reused_not_regenerated(tmp_path, monkeypatch):
    model = tiny_model()
    images, labels = uint8_images()
    bank = make_bank(tmp_path / "bank", model, images, labels, max_eps=4, seed=3, log=lambda _: None)
    eps = np.load(tmp_path / "bank" / "eps.npy")
    assert set(eps.tolist()) <= {1, 2, 3, 4}
    rows = torch.tensor([5, 0, 17])
    for i in rows.tolist():  # lossless: each image equals iter_FGSM at its own eps
        # the training images: the last iterate (attacks.pgd.TRAINING_ITERATE)
        attack = ATTACKS.build("iter_fgsm", eps=int(eps[i]) / 255, iterate="last")
        expected = attack(model, images[i:i + 1].float() / 255, labels[i:i + 1])
        torch.testing.assert_close(bank[torch.tensor([i])], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(bank[rows], torch.cat([bank[torch.tensor([i])] for i in rows.tolist()]))

    calls = []
    def no_attack(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a reused bank must build no attack")

    monkeypatch.setattr(ATTACKS, "build", no_attack)
    again = make_bank(tmp_path / "bank", model, images, labels, max_eps=4, seed=3, log=lambda _: None)
    assert calls == []                                # reused: no attack was built
    torch.testing.assert_close(again[rows], bank[rows])


def test_bank_resumes_where_it_stopped_and_refuses_other_settings(tmp_path):
    model = tiny_model()
    images, labels = uint8_images()
    make_bank(tmp_path / "bank", model, images, labels, max_eps=3, log=lambda _: None)
    full = ImageBank(tmp_path / "bank")[torch.arange(24)]
    done = np.load(tmp_path / "bank" / "done.npy", mmap_mode="r+")
    done[10:] = False                                  # as if interrupted after 10 images
    done.flush()
    stored = np.load(tmp_path / "bank" / "images.npy", mmap_mode="r+")
    stored[10:] = 0                                    # ... whose later rows were never written
    stored.flush()
    with pytest.raises(UserError, match="incomplete"):
        ImageBank(tmp_path / "bank")
    resumed = make_bank(tmp_path / "bank", model, images, labels, max_eps=3, log=lambda _: None)
    torch.testing.assert_close(resumed[torch.arange(24)], full)
    with pytest.raises(UserError, match="max_eps"):
        make_bank(tmp_path / "bank", model, images, labels, max_eps=5, log=lambda _: None)
    other = images.clone()
    other[0, 0, 0, 0] ^= 1
    with pytest.raises(UserError, match="split_sha1"):
        make_bank(tmp_path / "bank", model, other, labels, max_eps=3, log=lambda _: None)
    with pytest.raises(UserError, match="out of range"):
        resumed[torch.tensor([24])]


class IdentityBank:
    """A bank whose saved images are the clean training images: shows which rows were read."""

    def __init__(self, split):
        self.images = split.images

    def __getitem__(self, index):
        return self.images[index].float() / 255


def test_cascade_adversary_mixes_one_step_and_saved_images():
    model = tiny_model()
    images, labels = uint8_images(16)
    x = images.float() / 255
    adversary = CascadeAdversary(RandomEpsOneStep("step_ll", 0.1, fraction=0.5), saved_fraction=0.5)
    adversary.bank = IdentityBank(type("S", (), {"images": images})())
    order = torch.randperm(16)
    x_adv = adversary(model, x[order], labels[order], index=order)
    assert len(x_adv) == 8                              # k = 0.5 * 16
    assert torch.equal(x_adv[4:], x[order][4:8])        # the last half of k: bank rows of these images
    assert not torch.equal(x_adv[:4], x[order][:4])     # the first half: fresh one-step images
    with pytest.raises(UserError, match="index"):
        adversary(model, x, labels)


def test_cascade_training_reads_each_batch_images_own_saved_version(tmp_path, monkeypatch):
    checked = []
    original = CascadeAdversary.__call__

    def checking(self, model, x, y, index=None):
        x_adv = original(self, model, x, y, index)
        k = len(x_adv)
        saved = round(self.saved_fraction * k)
        assert torch.equal(x_adv[k - saved:], x[k - saved:k])  # the identity bank returns x itself
        checked.append(len(x))
        return x_adv

    monkeypatch.setattr(CascadeAdversary, "__call__", checking)
    monkeypatch.setattr(training, "cascade_bank", lambda cfg, ds, split, *a, **k: IdentityBank(split))
    cfg = load_config("configs/cascade_fmnist.yaml", [*TINY, f"out_dir={tmp_path}", "name=c"])
    run = experiment.train(cfg, log=lambda _: None)
    assert len(checked) == 256 // 32 and run.history[-1]["epoch"] == 1


def test_source_images_draw_a_fresh_eps_per_read_as_the_papers_bank_of_every_version():
    # Table 5: P2's iter_FGSM images for eps = 1..16, "used randomly": every read draws its eps
    torch.manual_seed(0)
    model = tiny_model().eval()
    images = torch.randint(30, 220, (6, 1, 28, 28), dtype=torch.uint8)  # no clipping at 0 or 1
    labels = torch.arange(6) % 3
    source = SourceImages(model, images, labels, max_eps=4)
    x0 = images[:1].float() / 255
    seen = set()
    for _ in range(40):
        out = source[torch.tensor([0])]
        e = round((out - x0).abs().max().item() * 255)
        seen.add(e)
        expected = ATTACKS.build("iter_fgsm", eps=e / 255)(model, x0, labels[:1])
        torch.testing.assert_close(out, expected)
    assert seen == {1, 2, 3, 4}
    with pytest.raises(UserError, match="out of range"):
        source[torch.tensor([6])]


def test_cascade_training_reads_the_sources_images(tmp_path):
    source = load_config("configs/bidirection_fmnist.yaml", [*TINY, f"out_dir={tmp_path}", "name=src"])
    experiment.train(source, log=lambda _: None)
    cfg = load_config("configs/cascade_fmnist.yaml", [*TINY, f"out_dir={tmp_path}", "name=c1",
                                                       f"defense.source={tmp_path / 'src'}"])
    lines = []
    run = experiment.train(cfg, log=lines.append)
    assert run.history[-1]["epoch"] == 1
    assert any("drawn per use" in line and str(tmp_path / "src") in line for line in lines)
    with pytest.raises(UserError, match="defense.source is set"):
        experiment.train(load_config("configs/pivot_fmnist.yaml", [*TINY, f"out_dir={tmp_path}", "name=p",
                                                                   f"defense.source={tmp_path / 'src'}"]),
                         log=lambda _: None)


# ---- analyses --------------------------------------------------------------------------------

def test_correlation_of_a_gradient_with_itself_is_one():
    g = torch.randn(5, 1, 28, 28)
    torch.testing.assert_close(pearson(g, g), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(pearson(g, -3 * g + 2), -torch.ones(5, dtype=torch.float64))
    a, b = t([[1, 2, 3]]), t([[1, 3, 2]])  # hand: centred (-1, 0, 1), (-1, 1, 0) -> 1 / 2
    assert pearson(a, b).item() == pytest.approx(0.5)


def test_error_surface_curves_start_at_the_clean_image():
    model = tiny_model()
    torch.manual_seed(0)
    x, y = torch.rand(12, 1, 28, 28), torch.arange(12) % 10
    corr = gradient_correlation(model, x, y, [0.0, 0.05])
    for pair in ("clean/step_ll", "clean/step_fgsm", "clean/random_sign", "step_ll/step_fgsm"):
        assert corr[pair]["mean"][0] == pytest.approx(1.0)      # at eps 0 both images are x
        assert corr[pair]["mean"][1] < 1.0
    soft = softmax_arguments(model, x, y, [0.0], "step_ll")
    with torch.no_grad():
        logits = model(x)
    true = logits.gather(1, y[:, None]).squeeze(1)
    assert soft["true_mean"][0] == pytest.approx(true.mean().item(), abs=1e-6)
    assert soft["false_mean"][0] == pytest.approx(((logits.sum(1) - true) / 9).mean().item(), abs=1e-6)
    leak = label_leaking(model, x, y, [0.0, 0.05, 0.1])
    assert leak["accuracy"][0] == pytest.approx(leak["clean_accuracy"])
    assert leak["leaks"] == any(a > leak["clean_accuracy"] for a in leak["accuracy"][1:])


def test_transfer_matrix_diagonal_is_white_box_and_an_inert_attack_gives_clean_accuracy():
    models = {"a": tiny_model(0), "b": tiny_model(1)}
    torch.manual_seed(0)
    x, y = torch.rand(20, 1, 28, 28), torch.arange(20) % 10
    fgsm = ATTACKS.build("step_fgsm", eps=0.1)
    table = transfer_matrix(models, x, y, {"fgsm": fgsm, "none": lambda m, x, y: x})
    for name, model in models.items():
        with torch.no_grad():
            clean = (model(x).argmax(1) == y).float().mean().item()
            white = (model(fgsm(model, x, y)).argmax(1) == y).float().mean().item()
        assert table["none"][name] == {"a": pytest.approx(clean), "b": pytest.approx(clean)}
        assert table["fgsm"][name][name] == pytest.approx(white)
    with pytest.raises(UserError, match="two runs"):
        transfer_matrix({"a": models["a"]}, x, y, {"fgsm": fgsm})
