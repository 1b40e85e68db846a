import gzip
import json
import struct
import subprocess
import sys

import pytest

import robustlab
from robustlab.cli import main

TINY = ["data.name=synthetic", "data.options={train_size: 128, test_size: 64}", "model.name=lenet",
        "data.batch_size=32", "train.epochs=1"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("robustlab: error: ")
    return lines[0]


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert robustlab.__version__ in capsys.readouterr().out


def test_train_then_eval(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "train", *TINY, f"out_dir={tmp_path}", "name=r")
    assert code == 0
    trained = float(out.strip().splitlines()[-1].split("clean test accuracy: ")[1].split()[0])
    code, out, _ = run_cli(capsys, "eval", str(tmp_path / "r"), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["clean_accuracy"] == pytest.approx(trained, abs=1e-4)
    assert result["test_images"] == 64
    code, out, _ = run_cli(capsys, "eval", str(tmp_path / "r" / "checkpoints" / "best.pt"))
    assert code == 0 and "clean test accuracy" in out


def test_resume_by_name_and_datasets_listing(tmp_path, capsys):
    assert run_cli(capsys, "train", *TINY, f"out_dir={tmp_path}", "name=r")[0] == 0
    code, out, _ = run_cli(capsys, "train", "--resume", "name=r", f"out_dir={tmp_path}", "train.epochs=2")
    assert code == 0 and "resumed" in out
    code, out, _ = run_cli(capsys, "datasets")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert {"fashion-mnist", "mnist", "cifar10", "cifar100", "svhn", "digits", "synthetic"} <= set(names)


def write_idx(path, magic, dims, payload):
    with gzip.open(path, "wb") as handle:
        handle.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload)


@pytest.mark.parametrize("case, args, expected", [
    ("missing dataset directory", ["data.name=fashion-mnist", "data.data_dir={tmp}/nowhere"], "nowhere"),
    ("missing dataset directory (flag)", ["--data-dir", "{tmp}/absent"], "absent"),
    ("unknown model", [*TINY, "model.name=resnet7"], "unknown model 'resnet7'"),
    ("unknown config key", [*TINY, "train.epochz=1"], "unknown config key 'train.epochz'"),
    ("negative epochs", [*TINY, "train.epochs=-2"], "train.epochs=-2 is out of range"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, case, args, expected):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = run_cli(capsys, "train", *args, f"out_dir={tmp_path}", "name=bad")
    assert code == 2, case
    assert expected in one_error_line(err)


def test_wrong_idx_magic_one_line(tmp_path, capsys):
    folder = tmp_path / "fm"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", 0x0803, (2, 28, 28), bytes(2 * 784))
    write_idx(folder / "train-labels-idx1-ubyte.gz", 0x0999, (2,), bytes(2))  # wrong magic
    write_idx(folder / "t10k-images-idx3-ubyte.gz", 0x0803, (2, 28, 28), bytes(2 * 784))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", 0x0801, (2,), bytes(2))
    code, _, err = run_cli(capsys, "train", f"data.data_dir={folder}", f"out_dir={tmp_path}", "name=bad")
    assert code == 2
    line = one_error_line(err)
    assert "train-labels-idx1-ubyte" in line and "magic" in line


def test_checkpoint_of_another_architecture(tmp_path, capsys):
    assert run_cli(capsys, "train", *TINY, f"out_dir={tmp_path}", "name=r")[0] == 0
    code, _, err = run_cli(capsys, "train", *TINY, "model.name=small_cnn", f"out_dir={tmp_path}",
                           "name=r", "--resume")
    assert code == 2 and "model.name" in one_error_line(err)
    # A checkpoint whose recorded architecture does not match its weights is refused too.
    from robustlab.errors import UserError
    from robustlab.models import create_model
    from robustlab.train import load_checkpoint, load_weights
    state = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    with pytest.raises(UserError, match="different architecture"):
        load_weights(create_model("resnet20", num_classes=10, in_channels=1, image_size=28), state)


def test_debug_shows_traceback_and_subprocess_exit_code(tmp_path):
    cmd = [sys.executable, "-m", "robustlab", "train", "model.name=nope", *TINY[:1], f"out_dir={tmp_path}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "unknown model 'nope'" in done.stderr
    debug = subprocess.run([cmd[0], "-m", "robustlab", "--debug", *cmd[3:]], capture_output=True,
                           text=True, timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_eval_bad_inputs(tmp_path, capsys):
    code, _, err = run_cli(capsys, "eval", str(tmp_path / "no-such-run"))
    assert code == 2 and "does not exist" in one_error_line(err)
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "eval", str(tmp_path / "empty"))
    assert code == 2 and "has no checkpoints/last.pt" in one_error_line(err)
    assert run_cli(capsys, "train", *TINY, f"out_dir={tmp_path}", "name=r")[0] == 0
    code, _, err = run_cli(capsys, "eval", str(tmp_path / "r"), "--batch-size", "0")
    assert code == 2 and "--batch-size=0" in one_error_line(err)


def test_attack_command_reports_and_saves(tmp_path, capsys):
    assert run_cli(capsys, "train", *TINY, f"out_dir={tmp_path}", "name=r")[0] == 0
    saved = tmp_path / "adv.pt"
    code, out, _ = run_cli(capsys, "attack", str(tmp_path / "r"), "--attack", "pgd", "steps=5",
                           "eps=8/255", "--limit", "32", "--save", str(saved), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["params"] == {"eps": 8 / 255, "steps": 5} and result["images"] == 32
    assert result["robust_accuracy"] <= result["clean_accuracy"]
    assert result["linf_max"] <= 8 / 255 + 1e-6
    from robustlab.attacks import load_adversarial_set
    x_adv, y, meta = load_adversarial_set(saved)
    assert x_adv.shape == (32, 1, 28, 28) and len(y) == 32
    assert meta["attack"] == "pgd" and meta["params"]["steps"] == 5
    code, out, _ = run_cli(capsys, "attacks")
    assert code == 0 and {"fgsm", "pgd", "step_ll", "iter_ll", "mim", "cw_inf"} <= {
        line.split()[0] for line in out.splitlines()}


@pytest.mark.parametrize("args, expected", [
    (["--attack", "pgd", "eps=3"], "eps=3 is larger than the [0, 1] input range"),
    (["--attack", "pgd", "eps=-0.1"], "eps=-0.1 is out of range"),
    (["--attack", "pgd", "stepz=3"], "unknown parameter(s) stepz"),
    (["--attack", "nope"], "unknown attack 'nope'"),
    (["--limit", "0"], "--limit=0 is out of range"),
    (["--attack", "pgd", "eps"], "must look like key=value"),
])
def test_attack_bad_input(tmp_path, capsys, args, expected):
    assert run_cli(capsys, "train", *TINY, f"out_dir={tmp_path}", "name=r")[0] == 0
    code, _, err = run_cli(capsys, "attack", str(tmp_path / "r"), *args)
    assert code == 2 and expected in one_error_line(err)
