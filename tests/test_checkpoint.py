import os
import pickle

import pytest
import torch

from robustlab.errors import UserError
from robustlab.models import create_model
from robustlab.train import check_architecture, load_checkpoint, load_weights, save_checkpoint


def small():
    return create_model("lenet", num_classes=10, in_channels=1, image_size=28)


def test_round_trip(tmp_path):
    model = small()
    path = save_checkpoint({"arch": model.arch, "model": model.state_dict(), "epoch": 3},
                           tmp_path / "c" / "last.pt")
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and state["format"].startswith("robustlab-checkpoint")
    other = small()
    load_weights(other, state)
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1}, path)
    before = path.read_bytes()

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint({"epoch": 2}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["last.pt"]  # no temp file left behind


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = save_checkpoint({"epoch": 1, "w": torch.randn(1000)}, tmp_path / "last.pt")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_checkpoint(path)


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "robustlab-checkpoint/1", "model": _Payload(str(target))}, path)
    with pytest.raises(UserError, match="refusing to load"):
        load_checkpoint(path)
    assert not target.exists()
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Payload(str(target))))
    with pytest.raises(UserError):
        load_checkpoint(raw)
    assert not target.exists()


def test_foreign_file_and_missing_file(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(UserError, match="not a robustlab checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_other_architecture_is_refused_naming_both():
    lenet = small()
    state = {"arch": lenet.arch, "model": lenet.state_dict()}
    cnn = create_model("small_cnn", num_classes=10, in_channels=1, image_size=28)
    expected = "different architecture.*name: checkpoint 'lenet' vs model 'small_cnn'"
    with pytest.raises(UserError, match=expected):
        load_weights(cnn, state)
    five = create_model("lenet", num_classes=5, in_channels=1, image_size=28)
    with pytest.raises(UserError, match="num_classes: checkpoint 10 vs model 5"):
        check_architecture(state, five)
