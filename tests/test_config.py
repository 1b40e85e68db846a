import pytest
import yaml

from robustlab.config import Config, load_config, save_config
from robustlab.errors import UserError


def write(tmp_path, values):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_file_then_overrides_in_order(tmp_path):
    path = write(tmp_path, {"train": {"epochs": 7}, "model": {"name": "lenet"}, "optim": {"lr": 1}})
    cfg = load_config(path, ["train.epochs=3", "name=other", "model.options={width: 8}"])
    assert cfg.train.epochs == 3
    assert cfg.model.name == "lenet"
    assert cfg.name == "other"
    assert cfg.model.options == {"width": 8}
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)  # int accepted for float
    assert cfg.data.name == "fashion-mnist"  # untouched default


@pytest.mark.parametrize("override, key", [("train.epoch=3", "train.epoch"), ("trian.epochs=3", "trian")])
def test_unknown_key_names_key_and_valid_ones(override, key):
    with pytest.raises(UserError, match=f"unknown config key '{key}'") as err:
        load_config(None, [override])
    assert "epochs" in str(err.value) or "train" in str(err.value)


def test_unknown_key_in_file(tmp_path):
    with pytest.raises(UserError, match="unknown config key 'data.batchsize'.*batch_size"):
        load_config(write(tmp_path, {"data": {"batchsize": 3}}))


@pytest.mark.parametrize("override, match", [
    ("train.epochs=abc", "train.epochs='abc' has the wrong type: expected int"),
    ("train.epochs=true", "train.epochs=True has the wrong type"),
    ("train.epochs=2.5", "train.epochs=2.5 has the wrong type"),
    ("optim.name=rmsprop", "optim.name='rmsprop' is not allowed: choose one of sgd, adam"),
    ("train.grad_clip=x", "train.grad_clip='x' has the wrong type"),
    ("data=3", "data must be a mapping"),
])
def test_wrong_types(override, match):
    with pytest.raises(UserError, match=match):
        load_config(None, [override])


@pytest.mark.parametrize("override, key", [
    ("train.epochs=-1", "train.epochs"), ("data.batch_size=0", "data.batch_size"),
    ("optim.lr=0", "optim.lr"), ("data.val_fraction=1.0", "data.val_fraction"),
    ("schedule.milestones=[0.5, 2]", "schedule.milestones"), ("name=a/b", "name"),
])
def test_out_of_range(override, key):
    with pytest.raises(UserError, match=f"^{key}="):
        load_config(None, [override])


def test_float_written_without_dot_is_a_number():
    assert load_config(None, ["optim.lr=1e-3"]).optim.lr == 0.001  # YAML 1.1 reads this as a str


def test_optional_accepts_null_and_value():
    assert load_config(None, ["train.grad_clip=null"]).train.grad_clip is None
    assert load_config(None, ["train.grad_clip=1"]).train.grad_clip == 1.0


def test_malformed_override_and_files(tmp_path):
    with pytest.raises(UserError, match="must look like key.subkey=value"):
        load_config(None, ["train.epochs"])
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list")
    with pytest.raises(UserError, match="must hold a mapping"):
        load_config(bad)


def test_save_round_trip(tmp_path):
    cfg = load_config(None, ["train.epochs=4", "optim.betas=[0.5, 0.9]", "model.options={depth: 20}"])
    save_config(cfg, tmp_path / "saved.yaml")
    again = load_config(tmp_path / "saved.yaml")
    assert again == cfg
    assert again.to_dict() != Config().to_dict()
