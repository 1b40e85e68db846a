import pytest
import yaml

from robustlab.cli import _attack_params, build_parser
from robustlab.config import Config, load_config, parse_float, save_config
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


@pytest.mark.parametrize("text, value", [("8/255", 8 / 255), ("2.5 / 255", 2.5 / 255), (" 16/255 ", 16 / 255),
                                         (".5/2", 0.25), ("0.1", 0.1), ("1e-3", 0.001)])
def test_parse_float_reads_numbers_and_fractions(text, value):
    assert parse_float(text) == pytest.approx(value, rel=1e-15)


def test_fractions_in_a_file_and_an_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("defense:\n  eps: 8/255\noptim:\n  lr: 1/10\n")  # YAML reads both as strings
    cfg = load_config(path)
    assert cfg.defense.eps == 8 / 255 and cfg.optim.lr == 0.1
    assert load_config(None, ["defense.eps=2.5 / 255"]).defense.eps == 2.5 / 255
    assert load_config(path, ["defense.eps=null"]).defense.eps is None


@pytest.mark.parametrize("override, match", [
    ("defense.eps=8/0", "^defense.eps='8/0' divides by zero: write a fraction as a/b with b > 0"),
    ("optim.lr=1/0.0", "^optim.lr='1/0.0' divides by zero"),
    ("defense.eps=8/x", "^defense.eps='8/x' has the wrong type: expected float"),
    ("defense.eps=abc", "^defense.eps='abc' has the wrong type: expected float"),
    ("defense.eps=1/2/3", "^defense.eps='1/2/3' has the wrong type"),
    ("train.epochs=8/2", "^train.epochs='8/2' has the wrong type: expected int"),  # floats only
    ("defense.eps=300/255", r"^defense.eps=1.176\d* is out of range"),
])
def test_bad_fractions_are_one_line_user_errors(override, match):
    with pytest.raises(UserError, match=match) as err:
        load_config(None, [override])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("command", [["eval", "runs/r"], ["detect", "runs/r"], ["explain", "runs/r"]])
def test_eps_flags_take_fractions(command):
    assert build_parser().parse_args([*command, "--eps", "8/255"]).eps == 8 / 255
    assert build_parser().parse_args([*command, "--eps", "0.1"]).eps == 0.1


@pytest.mark.parametrize("value, match", [("8/0", "'8/0' divides by zero"),
                                          ("8/x", "'8/x' is not a number or a fraction a/b"),
                                          ("abc", "'abc' is not a number or a fraction a/b")])
def test_bad_eps_flag_is_an_argparse_error_naming_the_value(capsys, value, match):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["eval", "runs/r", "--eps", value])
    assert done.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("robustlab eval: error: argument --eps: ") and match in last


def test_attack_parameters_read_fractions_with_the_same_parser():
    params = _attack_params(["eps=8/255", "step_size= 2.5 / 255", "steps=20", "target=least_likely"])
    assert params == {"eps": 8 / 255, "step_size": 2.5 / 255, "steps": 20, "target": "least_likely"}
    assert _attack_params(["eps=8/x"]) == {"eps": "8/x"}  # not a fraction: YAML as before
    with pytest.raises(UserError, match="^attack parameter eps='8/0' divides by zero"):
        _attack_params(["eps=8/0"])


def test_recipe_options_read_fractions():
    from robustlab.defenses import build_objective

    objective = build_objective("madry", eps=8 / 255, step_size="2/255", steps=3)
    assert objective.adversary.attack.step_size == pytest.approx(2 / 255)
    with pytest.raises(UserError, match=r"defense.options.step_size='2/0' divides by zero"):
        build_objective("madry", eps=8 / 255, step_size="2/0")


def test_suite_files_read_fractions(tmp_path):
    from robustlab.eval.suite import load_suite

    path = tmp_path / "mine.yaml"
    path.write_text("attacks:\n  - {label: P, attack: pgd, steps: 10, step_size: 2/255}\n"
                    "  - {label: Q, attack: fgsm, eps_factor: 1/2}\n")
    p, q = load_suite(path).attacks
    assert p.params["step_size"] == pytest.approx(2 / 255) and q.eps_factor == pytest.approx(0.5)
    path.write_text("attacks:\n  - {label: P, attack: pgd, step_size: 2/0}\n")
    with pytest.raises(UserError, match=r"step_size='2/0' divides by zero"):
        load_suite(path)
