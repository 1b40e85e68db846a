"""Faults a user or the machine can cause, each with what must happen: one clear line and exit
code 2 for bad input, a resumable state after SIGINT / SIGTERM / kill -9, nothing executed from
untrusted files, nothing written outside the run directory, every user string escaped in HTML.
docs/reliability.md lists them with these tests."""

import errno
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustlab.attacks import Threat, load_adversarial_set, save_adversarial_set
from robustlab.attacks.adversarial_set import FORMAT
from robustlab.cli import main
from robustlab.config import load_config
from robustlab.errors import UserError
from robustlab.experiment import evaluate_suite, train
from robustlab.io import plain_torch_load
from robustlab.train import load_checkpoint

TINY = ["data.name=synthetic", "data.options={train_size: 128, test_size: 64}", "model.name=lenet",
        "data.batch_size=32", "train.epochs=1", "train.monitor_images=0"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "robustlab", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, **kw)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    train(load_config(None, [*TINY, f"out_dir={out}", "name=r"]), log=lambda _: None)
    return out / "r"


# ---- bad input: one line, exit code 2, for every command ----------------------------------------

@pytest.mark.parametrize("args, expected", [
    (["train", *TINY, "optim.lr=-1"], "optim.lr=-1"),
    (["train", *TINY, "data.batch_size=0"], "data.batch_size=0"),
    (["train", *TINY, "data.val_fraction=1.5"], "data.val_fraction=1.5"),
    (["train", *TINY, "defense.eps=2"], "defense.eps=2"),
    (["train", *TINY, "defense.recipe=madry", "defense.options={steps: 0}"], "steps=0"),
    (["train", *TINY, "defense.recipe=kurakin", "defense.options={adv_fraction: 1.5}"], "fraction=1.5"),
    (["train", *TINY, "data.options={train_size: 128, test_size: 64, num_classes: 1}"], "num_classes"),
    (["train", *TINY, "train.epochs=two"], "train.epochs='two' has the wrong type"),
    (["train", *TINY, "name=../outside"], "not a valid run name"),
    (["train", *TINY, "name=/tmp/abs"], "not a valid run name"),
    (["train", "--config", "{tmp}/missing.yaml"], "missing.yaml"),
    (["eval", "{tmp}/nowhere"], "does not exist"),
    (["eval", "{run}", "--suite", "nope"], "nope"),
    (["eval", "{run}", "--suite", "quick", "--eps", "3"], "--eps=3"),
    (["eval", "{run}", "--suite", "quick", "--limit", "0"], "--limit=0"),
    (["eval", "{run}", "--checkpoint", "best_robust"], "best_robust"),
    (["attack", "{run}", "--attack", "pgd", "steps=-1"], "steps=-1"),
    (["attack", "{run}", "--attack", "pgd", "eps=nan"], "eps"),
    (["compare", "{tmp}/nowhere"], "nowhere"),
    (["compare", "{run}"], "report"),
])
def test_each_bad_input_is_one_line_with_exit_code_2(tmp_path, capsys, run_dir, args, expected):
    args = [a.replace("{tmp}", str(tmp_path)).replace("{run}", str(run_dir)) for a in args]
    if args[0] == "train":
        args += [f"out_dir={tmp_path}"]
    code, _, err = run_cli(capsys, *args)
    line = one_line(err)
    assert code == 2 and line.startswith("robustlab: error: ") and expected in line, line
    assert not (tmp_path / "outside").exists() and not Path("/tmp/abs").exists()


@pytest.mark.parametrize("text, expected", [
    ("train: {epochz: 3}\n", "train.epochz"),
    ("data: {batch_size: many}\n", "data.batch_size='many' has the wrong type"),
    ("extends: no_such_base.yaml\n", "no_such_base.yaml"),
    ("train: [unclosed\n", "not valid YAML"),
])
def test_a_config_file_with_unknown_keys_or_wrong_types(tmp_path, capsys, text, expected):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    code, _, err = run_cli(capsys, "train", "--config", bad, f"out_dir={tmp_path}")
    assert code == 2 and expected in one_line(err)


def test_images_with_nan_or_inf_are_refused(tmp_path):
    from robustlab.attacks import ATTACKS
    from robustlab.models import create_model

    model = create_model("lenet", num_classes=10, in_channels=1, image_size=28)
    for bad in (float("nan"), float("inf")):
        x = torch.rand(2, 1, 28, 28)
        x[0, 0, 0, 0] = bad
        with pytest.raises(UserError, match="NaN|inf|outside"):
            ATTACKS.build("pgd", eps=0.1)(model, x, torch.tensor([0, 1]))
        with pytest.raises(UserError, match="finite values in \\[0, 1\\]"):
            save_adversarial_set(tmp_path / "adv.pt", x, torch.tensor([0, 1]), {"attack": "x"})
        path = tmp_path / "forged.pt"  # written by hand, past save_adversarial_set's checks
        torch.save({"format": FORMAT, "x_adv": x, "y": torch.tensor([0, 1]), "meta": {}}, path)
        with pytest.raises(UserError, match="finite values in \\[0, 1\\]"):
            load_adversarial_set(path)


def test_an_existing_run_is_kept_unless_force(tmp_path, capsys):
    args = ["train", *TINY, f"out_dir={tmp_path}", "name=keep"]
    assert run_cli(capsys, *args)[0] == 0
    before = (tmp_path / "keep" / "checkpoints" / "last.pt").read_bytes()
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "already exists" in one_line(err)
    assert (tmp_path / "keep" / "checkpoints" / "last.pt").read_bytes() == before
    assert run_cli(capsys, *args, "--force", "seed=3")[0] == 0
    assert (tmp_path / "keep" / "checkpoints" / "last.pt").read_bytes() != before


def test_a_failing_disk_write_loses_nothing(tmp_path, capsys, monkeypatch):
    args = ["train", *TINY, "train.epochs=3", f"out_dir={tmp_path}", "name=disk"]
    real_save, calls = torch.save, {"n": 0}

    def full_disk(obj, f, *a, **kw):
        calls["n"] += 1
        if calls["n"] >= 2:  # the first epoch's checkpoint is written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", full_disk)
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "No space left on device" in one_line(err)
    monkeypatch.setattr(torch, "save", real_save)
    state = load_checkpoint(tmp_path / "disk" / "checkpoints" / "last.pt")  # whole and loadable
    assert state["epoch"] == 1
    assert not list((tmp_path / "disk" / "checkpoints").glob("*.tmp"))
    assert run_cli(capsys, "train", "--resume", "name=disk", f"out_dir={tmp_path}")[0] == 0
    assert load_checkpoint(tmp_path / "disk" / "checkpoints" / "last.pt")["epoch"] == 3


def test_a_failing_report_write_keeps_the_previous_report(tmp_path, run_dir, monkeypatch):
    out = tmp_path / "rep"
    evaluate_suite(run_dir, "quick", limit=8, out=str(out), log=lambda _: None)
    before = (out / "report.html").read_text()

    def broken(fd, *a, **kw):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        evaluate_suite(run_dir, "quick", limit=8, out=str(out), log=lambda _: None)
    assert (out / "report.html").read_text() == before
    assert not list(out.glob(".*.tmp"))


# ---- interruptions with real processes ---------------------------------------------------------

def _wait_for(predicate, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_sigterm_during_training_resumes_to_the_uninterrupted_weights(tmp_path):
    args = ["train", *TINY, "train.epochs=4", "train.log_every=1",
            "data.options={train_size: 512, test_size: 64}", f"out_dir={tmp_path}"]
    whole = subprocess.run([sys.executable, "-m", "robustlab", *args, "name=whole"], capture_output=True,
                           text=True, env=ENV, timeout=300)
    assert whole.returncode == 0, whole.stderr
    proc = cli(*args, "name=cut")
    metrics = tmp_path / "cut" / "metrics.jsonl"
    assert _wait_for(lambda: metrics.is_file() and metrics.read_text().count("\n") >= 5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "SIGTERM: saving state" in err, err
    cut = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert 0 < cut["global_step"] < 4 * 16
    done = subprocess.run([sys.executable, "-m", "robustlab", "train", "--resume", "name=cut",
                           f"out_dir={tmp_path}"], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["history"][-1]["test_acc"] == b["history"][-1]["test_acc"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_evaluation_keeps_finished_attacks(tmp_path, run_dir, sig):
    suite = tmp_path / "slow.yaml"
    suite.write_text("name: slow\nattacks:\n" + "".join(
        f"  - {{label: PGD-{k}, attack: pgd, steps: {k}}}\n" for k in (5, 200, 201)))
    out = tmp_path / "rep"
    proc = cli("eval", run_dir, "--suite", suite, "--limit", 64, "--out", out)
    assert _wait_for(lambda: (out / "state.pt").is_file())
    time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "run the same command again" in err, err
    state = plain_torch_load(out / "state.pt", "state", "")
    assert "PGD-5" in state["entries"]  # the finished attack is kept
    again = subprocess.run([sys.executable, "-m", "robustlab", "eval", str(run_dir), "--suite", str(suite),
                            "--limit", "64", "--out", str(out)], capture_output=True, text=True, env=ENV,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert (out / "report.json").is_file()


KILLER = """
import sys, torch
from robustlab.io import atomic_torch_save
path = sys.argv[1]
i = 0
while True:
    i += 1
    atomic_torch_save({"i": i, "x": torch.full((1_000_000,), float(i))}, path)
"""


def test_kill_9_while_writing_a_checkpoint_never_corrupts_the_latest(tmp_path):
    path = tmp_path / "last.pt"
    for delay in (0.05, 0.2, 0.35, 0.5, 0.8):
        proc = subprocess.Popen([sys.executable, "-c", KILLER, str(path)], env=ENV)
        assert _wait_for(path.is_file)
        time.sleep(delay)
        proc.kill()  # SIGKILL: no handler runs
        proc.wait()
        state = plain_torch_load(path, "checkpoint", "")
        assert torch.equal(state["x"], torch.full((1_000_000,), float(state["i"])))


# ---- untrusted files ----------------------------------------------------------------------------

class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_crafted_checkpoint_is_refused_by_every_command_and_runs_nothing(tmp_path, capsys):
    target = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    with evil.open("wb") as handle:
        pickle.dump({"format": "robustlab-checkpoint/1", "model": _Payload(str(target))}, handle)
    torch.save({"format": "robustlab-checkpoint/1", "model": _Payload(str(target))}, tmp_path / "evil2.pt")
    for path in (evil, tmp_path / "evil2.pt"):
        for argv in (["eval", path], ["attack", path, "--attack", "fgsm"],
                     ["train", *TINY, f"out_dir={tmp_path}", "name=t", "defense.recipe=agkd",
                      "defense.eps=0.1", f"defense.teacher={path}", "--force"]):
            code, _, err = run_cli(capsys, *argv)
            assert code == 2 and ("refusing to load" in err or "not a robustlab" in err), err
            assert not target.exists()


def test_html_escapes_every_user_supplied_string(tmp_path):
    name = "<img src=x onerror=alert(1)>"
    train(load_config(None, [*TINY, f"out_dir={tmp_path}", f"name={name}"]), log=lambda _: None)
    suite = tmp_path / "xss.yaml"
    suite.write_text("name: '<script>alert(1)</script>'\nattacks:\n"
                     "  - {label: '<script>alert(2)</script>', attack: fgsm}\n")
    report = evaluate_suite(tmp_path / name, str(suite), limit=8, out=str(tmp_path / "rep"),
                            log=lambda _: None)
    page = Path(report["files"]["html"]).read_text()
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page and "&lt;img src=x" in page
    from robustlab.experiment.compare import load_report
    from robustlab.report import compare_html

    both = compare_html([load_report(tmp_path / "rep" / "report.json")] * 2)
    assert "<script" not in both and "<img" not in both


# ---- numerical faults ----------------------------------------------------------------------------

def test_a_nan_loss_stops_naming_step_and_term_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = load_config(None, [*TINY, "train.epochs=2", f"out_dir={tmp_path}", "name=n"])
    train(cfg, log=lambda _: None)
    good = (tmp_path / "n" / "checkpoints" / "last.pt").read_bytes()
    import torch.nn.functional as F

    real = F.cross_entropy
    calls = {"n": 0}

    def blows_up_later(*a, **kw):  # the loss turns NaN at the third batch of the resumed epoch
        calls["n"] += 1
        value = real(*a, **kw)
        return value * float("nan") if calls["n"] >= 3 else value

    more = load_config(None, [*TINY, "train.epochs=3", f"out_dir={tmp_path}", "name=n"])
    monkeypatch.setattr(F, "cross_entropy", blows_up_later)
    with pytest.raises(UserError, match=r"non-finite loss at epoch 3, batch 2 \(step \d+\) in term"
                                        r"\(s\) clean_ce; the last good state is .*last.pt"):
        train(more, resume=True, log=lambda _: None)
    assert (tmp_path / "n" / "checkpoints" / "last.pt").read_bytes() == good


def test_fp16_overflow_steps_are_skipped_by_the_grad_scaler():
    from robustlab.train.state import Optimization

    model = torch.nn.Linear(2, 1)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    loss = (model(torch.ones(1, 2)) * 3e38).sum()  # finite, but its scaled gradient overflows as fp16 does

    Optimization(optimizer, scheduler, scaler, None).step(loss, model.parameters(), None, lambda: None)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the step was skipped
    assert scaler.get_scale() == 2.0 ** 15  # and the scale backed off
    assert scheduler.last_epoch == 0  # the schedule waits for a real update


# ---- properties -------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(norm=st.sampled_from(["linf", "l2"]), eps=st.floats(0.001, 1.0), seed=st.integers(0, 2 ** 31),
       scale=st.floats(0.0, 5.0))
def test_projection_is_always_inside_the_ball_and_the_box(norm, eps, seed, scale):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 1, 6, 6, generator=g)
    wild = x + scale * torch.randn(4, 1, 6, 6, generator=g)
    p = Threat(norm, eps).project(wild, x)
    assert p.min() >= 0 and p.max() <= 1
    delta = (p - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps * (1 + 1e-5) + 1e-6).all()


@settings(max_examples=80, deadline=None)
@given(key=st.sampled_from(["train.epochs", "data.batch_size", "optim.lr", "data.val_fraction",
                            "defense.eps", "train.label_smoothing", "name", "model.name", "nonsense.key"]),
       value=st.one_of(st.integers(-5, 500), st.floats(allow_nan=True, allow_infinity=True),
                       st.text(max_size=8), st.booleans(), st.none()))
def test_config_parsing_accepts_or_raises_a_user_error_never_crashes(key, value):
    try:
        cfg = load_config(None, [f"{key}={value}"])
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    cfg.validate()  # whatever was accepted is in range
