import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustlab.config import ScheduleConfig, load_config
from robustlab.errors import UserError
from robustlab.experiment import train
from robustlab.train import Callback, Interrupted
from robustlab.train.checkpoint import load_checkpoint
from robustlab.train.optim import lr_factor

TINY = ["data.name=synthetic", "data.options={train_size: 256, test_size: 128}",
        "model.name=lenet", "data.batch_size=32", "train.epochs=2", "optim.lr=0.05"]


def tiny(tmp_path, *extra, name="t"):
    return load_config(None, [*TINY, f"out_dir={tmp_path}", f"name={name}", *extra])


class StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step(self, run, metrics):
        if run.global_step == self.step:
            run.stop_requested = True


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_training_learns_and_logs(tmp_path):
    run = train(tiny(tmp_path, "train.epochs=5"), log=lambda _: None)
    assert run.finished and run.epoch == 5 and run.global_step == 5 * 8
    assert run.final["test_acc"] > 0.8  # synthetic classes are separable; chance is 0.1
    assert run.history[0]["train_loss"] > run.final["train_loss"]
    records = [json.loads(line) for line in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4, 5]
    expected = {"train_loss", "train_clean_ce", "train_acc", "test_acc", "images_per_s", "peak_mem_mb"}
    assert expected <= set(epochs[0])
    assert (tmp_path / "t" / "config.yaml").is_file()
    assert (tmp_path / "t" / "checkpoints" / "best.pt").is_file()


@pytest.mark.parametrize("stop_step", [5, 8])  # mid-epoch, and exactly at an epoch's end
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, stop_step):
    full = train(tiny(tmp_path, name="full"), log=lambda _: None)
    with pytest.raises(Interrupted, match="continue with --resume"):
        train(tiny(tmp_path, name="cut"), callbacks=[StopAt(stop_step)], log=lambda _: None)
    saved = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert saved["global_step"] == stop_step
    resumed = train(tiny(tmp_path, name="cut"), resume=True, log=lambda _: None)
    assert same_weights(full.model, resumed.model)
    assert resumed.final["test_acc"] == full.final["test_acc"]
    assert resumed.final["train_loss"] == pytest.approx(full.final["train_loss"], rel=1e-6)
    again = train(tiny(tmp_path, name="cut"), resume=True, log=lambda _: None)
    assert again.global_step == full.global_step  # a finished run is not trained further


def test_seed_changes_result(tmp_path):
    a = train(tiny(tmp_path, "train.epochs=1", name="a"), log=lambda _: None)
    b = train(tiny(tmp_path, "train.epochs=1", "seed=1", name="b"), log=lambda _: None)
    assert not same_weights(a.model, b.model)


def test_non_finite_loss_stops_naming_step_and_term(tmp_path):
    with pytest.raises(UserError, match=r"non-finite loss at epoch \d+, batch \d+ .* clean_ce"):
        train(tiny(tmp_path, "optim.lr=1e30", "optim.momentum=0", "schedule.name=constant"),
              log=lambda _: None)


def test_run_directory_is_never_silently_replaced(tmp_path):
    train(tiny(tmp_path, "train.epochs=1"), log=lambda _: None)
    with pytest.raises(UserError, match="already exists; use --resume .* --force"):
        train(tiny(tmp_path, "train.epochs=1"), log=lambda _: None)
    with pytest.raises(UserError, match="config differs from the saved one at model.name"):
        train(tiny(tmp_path, "model.name=small_cnn"), resume=True, log=lambda _: None)
    run = train(tiny(tmp_path, "train.epochs=2"), force=True, log=lambda _: None)
    assert run.global_step == 16  # started over, not continued


def test_lr_schedules_hand_values():
    cosine = lr_factor(ScheduleConfig(name="cosine", warmup_epochs=1), total_steps=12, steps_per_epoch=2)
    assert [cosine(0), cosine(1)] == [0.5, 1.0]  # linear warmup over 2 steps
    assert cosine(2) == pytest.approx(1.0)
    assert cosine(7) == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 10)))
    multistep = lr_factor(ScheduleConfig(name="multistep", milestones=[0.5, 0.75], gamma=0.1), 100, 10)
    assert [multistep(49), multistep(50), multistep(75)] == [1.0, pytest.approx(0.1), pytest.approx(0.01)]
    onecycle = lr_factor(ScheduleConfig(name="onecycle"), 100, 10)
    assert onecycle(0) < onecycle(29) == 1.0 > onecycle(60) > onecycle(99)


@pytest.mark.parametrize("recipe", [
    [],  # standard: one forward per step
    ["defense.recipe=trades", "defense.options={steps: 2}", "train.monitor_images=16"],  # two forwards
    # a teacher stage trained under DDP first, then three student forwards and partner draws
    ["defense.recipe=agkd_bml", "defense.eps=0.1", "defense.options={steps: 1}"],
    # Grad-CAM terms: double backward through DDP outputs, and two more forwards (masked images)
    ["defense.recipe=aad_madry", "defense.eps=0.1", "defense.options={steps: 1}"],
])
def test_two_gloo_processes_end_with_identical_weights(tmp_path, recipe):
    script = Path(__file__).with_name("ddp_train.py")
    # --standalone: torchrun picks a free port itself (no race with other processes).
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path),
           *TINY, f"out_dir={tmp_path}", "name=ddp", "train.device=cpu", *recipe]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 2 * 4  # each rank saw half the data
    for key, value in ranks[0]["model"].items():
        assert torch.equal(value, ranks[1]["model"][key]), key
    init = load_config(None, [*TINY, f"out_dir={tmp_path}", "name=x"])
    from robustlab.experiment import build_model, load_data, seed_everything
    seed_everything(init.seed)
    untrained = build_model(init, load_data(init)).state_dict()
    assert any(not torch.equal(untrained[k], ranks[0]["model"][k]) for k in untrained)
    assert (tmp_path / "ddp" / "checkpoints" / "last.pt").is_file()  # rank 0 wrote it


def test_bf16_autocast_trains_on_cpu(tmp_path):
    run = train(tiny(tmp_path, "train.amp=bf16", "train.epochs=1"), log=lambda _: None)
    assert math.isfinite(run.final["train_loss"])
    assert run.model.classifier.weight.dtype == torch.float32  # autocast, not a cast of the weights
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        train(tiny(tmp_path, "train.amp=fp16", name="fp16"), log=lambda _: None)


def test_sigint_in_a_real_process_saves_and_resumes(tmp_path):
    """Ctrl-C during `robustlab train` saves the state; --resume then finishes the run."""
    import os
    import signal
    import time

    args = [sys.executable, "-m", "robustlab", "train", *TINY, "train.epochs=200",
            "train.log_every=1", f"out_dir={tmp_path}", "name=sig"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "sig" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.is_file() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "continue with --resume" in err
    state = load_checkpoint(tmp_path / "sig" / "checkpoints" / "last.pt")
    assert 3 <= state["global_step"] < 200 * 8
    finish = subprocess.run([*args[:4], "--resume", "name=sig", f"out_dir={tmp_path}", "train.epochs=2"],
                            capture_output=True, text=True, timeout=300, env=os.environ)
    if state["epoch"] >= 2:  # the signal came late: nothing left to do, which is also correct
        assert "already finished" in finish.stdout
    assert finish.returncode == 0, finish.stderr


def test_tensorboard_holds_the_same_scalars_as_metrics_jsonl(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config(None, ["data.name=synthetic", "data.options={train_size: 128, test_size: 64}",
                             "model.name=lenet", "data.batch_size=32", "train.epochs=2", "train.log_every=2",
                             "train.monitor_images=16", "train.tensorboard=true", f"out_dir={tmp_path}",
                             "name=tb"])
    train(cfg, log=lambda _: None)
    records = [json.loads(line) for line in (tmp_path / "tb" / "metrics.jsonl").read_text().splitlines()]
    board = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    board.Reload()
    tags = board.Tags()["scalars"]
    for record in records:
        for key in ("loss", "lr", "images_per_s", "train_loss", "test_acc", "robust_acc"):
            if key in record:
                events = {e.step: e.value for e in board.Scalars(f"{record['kind']}/{key}")}
                assert events[record["step"]] == pytest.approx(record[key], rel=1e-6)
    assert {"epoch/train_loss", "epoch/test_acc", "epoch/robust_acc", "step/loss", "step/lr"} <= set(tags)


def test_tensorboard_without_the_package_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import raises ImportError
    cfg = load_config(None, ["data.name=synthetic", "data.options={train_size: 64, test_size: 32}",
                             "model.name=lenet", "data.batch_size=32", "train.epochs=1",
                             "train.tensorboard=true", f"out_dir={tmp_path}", "name=tb"])
    with pytest.raises(UserError, match="train.tensorboard needs the tensorboard package: pip install"):
        train(cfg, log=lambda _: None)


def test_compile_without_a_compiler_says_why_and_trains_eager(tmp_path, monkeypatch):
    import robustlab.train.device as device

    monkeypatch.setattr(device.shutil, "which", lambda name: None)
    lines = []
    cfg = load_config(None, ["data.name=synthetic", "data.options={train_size: 64, test_size: 32}",
                             "model.name=lenet", "data.batch_size=32", "train.epochs=1", "train.compile=true",
                             "train.monitor_images=0", f"out_dir={tmp_path}", "name=c"])
    run = train(cfg, log=lines.append)
    assert "compile: inductor needs a C++ compiler for the CPU (apt-get install g++, or set CXX); " \
           "running eager" in lines
    assert run.epoch == 1 and getattr(run.model, "_compiled_call_impl", None) is None  # eager


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    """torch.compile (inductor, CPU) gives the same training, up to float reassociation."""
    base = ["data.name=synthetic", "data.options={train_size: 128, test_size: 32}", "model.name=lenet",
            "data.batch_size=32", "train.epochs=1", "train.monitor_images=0", f"out_dir={tmp_path}"]
    eager = train(load_config(None, [*base, "name=e"]), log=lambda _: None)
    compiled = train(load_config(None, [*base, "name=c", "train.compile=true"]), log=lambda _: None)
    assert getattr(compiled.model, "_compiled_call_impl", None) is not None
    for (name, a), b in zip(eager.model.state_dict().items(), compiled.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-4), name
