"""Black-box transfer attacks and saved adversarial sets."""

import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from torch import nn

from robustlab.attacks import (
    ATTACKS,
    Transfer,
    load_adversarial_set,
    save_adversarial_set,
    transfer,
)
from robustlab.errors import UserError
from robustlab.io import atomic_torch_save

EPS = 0.1


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.fixture(scope="module")
def second_fmnist(trained_fmnist, tmp_path_factory):
    """Model B: the fixture's recipe with another seed (other initialisation, training subset and
    order); evaluated on model A's 500 test images."""
    from robustlab.config import load_config
    from robustlab.experiment import train

    cfg = load_config(None, [
        "model.options={width: 16, embedding_dim: 64}", "train.epochs=2", "data.train_limit=8192",
        "data.test_limit=500", "train.channels_last=true", f"out_dir={tmp_path_factory.mktemp('runs')}",
        "name=second", "seed=1"])
    return train(cfg, log=lambda _: None).model.cpu().eval().to(memory_format=torch.contiguous_format)


class Untouchable(nn.Module):
    """A target model that fails if a transfer attack ever runs it."""

    def forward(self, x):
        raise AssertionError("the transfer attack ran the target model")


def test_transfer_is_weaker_than_white_box_but_real(trained_fmnist, second_fmnist):
    model_a, x, y = trained_fmnist
    model_b = second_fmnist
    pgd = ATTACKS.build("pgd", eps=EPS, steps=20)
    clean_b = accuracy(model_b, x, y)
    white_box = accuracy(model_b, pgd(model_b, x, y), y)
    attack = transfer(model_a, "pgd", eps=EPS, steps=20)
    x_transfer = attack(Untouchable(), x, y)
    black_box = accuracy(model_b, x_transfer, y)
    assert clean_b > 0.8
    assert white_box + 0.2 < black_box < clean_b - 0.1, (white_box, black_box, clean_b)
    # The source's white-box examples, to the last iterate (PGD's noise is per sample: any batch
    # gives the same). With the best iterate, the first point across the source's boundary, the
    # target kept 76.8% here: above clean_b - 0.1, a transfer too weak to count.
    last = ATTACKS.build("pgd", eps=EPS, steps=20, iterate="last")
    assert torch.allclose(x_transfer[:32], last(model_a, x[:32], y[:32]), atol=1e-5)


def test_transfer_construction_and_errors():
    pgd = ATTACKS.build("pgd", eps=EPS, steps=2)
    source = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    assert isinstance(transfer(source, pgd), Transfer)
    assert transfer(source, "pgd", eps=EPS, steps=2).attack == replace(pgd, iterate="last")  # runs to the end
    with pytest.raises(UserError, match="only used with an attack name"):
        transfer(source, pgd, steps=3)
    with pytest.raises(UserError, match="needs a source model"):
        transfer("model.pt", pgd)
    with pytest.raises(UserError, match="unknown attack"):
        transfer(source, "deepfool", eps=EPS)
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    x_adv = transfer(source, pgd)(None, x, y)
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and (x_adv != x).any()


META = {"attack": "pgd", "eps": EPS, "norm": "linf", "params": {"steps": 20, "random_start": True},
        "source": {"name": "small_cnn", "width": 16}, "checkpoint": "runs/a/checkpoints/last.pt", "seed": 0}


def test_adversarial_set_round_trip_is_exact(tmp_path):
    x_adv, y = torch.rand(7, 1, 28, 28), torch.randint(0, 10, (7,))
    path = save_adversarial_set(tmp_path / "sets" / "pgd.pt", x_adv, y, META)
    x2, y2, meta = load_adversarial_set(path)
    assert torch.equal(x2, x_adv) and x2.dtype == x_adv.dtype and torch.equal(y2, y)
    assert {k: meta[k] for k in META} == META
    assert meta["robustlab_version"] and meta["created"].endswith("+00:00")
    assert [p.name for p in path.parent.iterdir()] == ["pgd.pt"]  # no temporary file left


def test_saved_transfer_set_evaluates_like_the_attack(trained_fmnist, tmp_path):
    model, x, y = trained_fmnist
    x, y = x[:64], y[:64]
    x_adv = transfer(model, "fgsm", eps=EPS)(None, x, y)
    path = save_adversarial_set(tmp_path / "fgsm.pt", x_adv, y, {**META, "attack": "fgsm", "params": {}})
    x2, y2, _ = load_adversarial_set(path)
    assert accuracy(model, x2, y2) == accuracy(model, x_adv, y) < accuracy(model, x, y)


def test_truncated_set_is_refused(tmp_path):
    path = save_adversarial_set(tmp_path / "a.pt", torch.rand(3, 1, 4, 4), torch.tensor([1, 2, 3]), META)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_adversarial_set(path)
    with pytest.raises(UserError, match="does not exist"):
        load_adversarial_set(tmp_path / "missing.pt")


class CreatesAFile:
    """Unpickling this calls open(marker, "w"): a stand-in for any code a crafted file could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"format": "robustlab-adversarial-set/1", "x_adv": torch.rand(1, 1, 2, 2),
                "y": torch.tensor([0]), "meta": {"attack": CreatesAFile(marker)}}, path)
    with pytest.raises(UserError, match="refusing to load"):
        load_adversarial_set(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: a plain pickle load runs it
    assert marker.exists()


def test_other_files_and_bad_metadata_are_refused(tmp_path):
    other = tmp_path / "checkpoint.pt"
    torch.save({"format": "robustlab-checkpoint/1", "model": {}}, other)
    with pytest.raises(UserError, match="not a robustlab adversarial set"):
        load_adversarial_set(other)
    x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 1])
    with pytest.raises(UserError, match="meta needs eps, norm"):
        save_adversarial_set(tmp_path / "a.pt", x, y, {"attack": "pgd"})
    with pytest.raises(UserError, match="'meta.params.model' is a Linear"):
        save_adversarial_set(tmp_path / "a.pt", x, y, {**META, "params": {"model": nn.Linear(2, 2)}})
    with pytest.raises(UserError, match="in \\[0, 1\\]"):
        save_adversarial_set(tmp_path / "a.pt", x * 255, y, META)
    with pytest.raises(UserError, match="matching x_adv's 2 images"):
        save_adversarial_set(tmp_path / "a.pt", x, y[:1], META)
    assert not (tmp_path / "a.pt").exists()


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = atomic_torch_save({"a": torch.ones(2)}, tmp_path / "f.pt")
    with pytest.raises(Exception):  # noqa: B017  (whatever pickling raises for a lambda)
        atomic_torch_save({"a": lambda: None}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["f.pt"]


def test_attacks_do_not_import_training():
    """Layering (docs/architecture.md): attacks sit below train; adversarial sets use robustlab.io instead."""
    code = "import sys, robustlab.attacks; print(any(m.startswith('robustlab.train') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
