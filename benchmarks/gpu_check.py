"""The GPU check of the Speed issue: what robustlab does on a CUDA device, in one short run.

Each step runs a few measured iterations after a warm-up and appends one JSON line to
OUT/gpu_check.jsonl as soon as it ends (a step that fails records its error and the rest go on):
  train    standard and madry training steps on Fashion-MNIST's shape (small_cnn) and on a
           CIFAR-shaped synthetic set (wrn28_10, preact_resnet18): AMP off / bf16 / fp16,
           channels_last, torch.compile off / on: images/s and peak memory
  pgd      PGD-20 against 20 forward + input-backward passes on the same batch (the limit)
  autoattack  AutoAttack's images/s, the reference and impl=robustlab (fp32, bf16), on an untrained
           small_cnn (every point breaks early: the fixed cost per call, not a robust model's)
`--dry-run` runs every step on the CPU with tiny sizes (2 iterations), to check the script itself;
scripts/gpu_check.sh adds torchrun + NCCL and a `reproduce --only madry,trades,agkd_bml` wall time.

    python benchmarks/gpu_check.py --out DIR [--dry-run] [--only train,pgd,autoattack]
    python benchmarks/gpu_check.py --out DIR --section   # DIR's lines as results.md's "## GPU check"
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import time
import traceback
from pathlib import Path

import torch
from results_file import publish, wrap_prose

from robustlab.attacks import ATTACKS
from robustlab.defenses import build_objective
from robustlab.errors import UserError
from robustlab.models import create_model
from robustlab.train.device import compile_model

SHAPES = {"fmnist": (1, 28, 10), "cifar": (3, 32, 10)}  # channels, size, classes
MODELS = (("fmnist", "small_cnn"), ("cifar", "wrn28_10"), ("cifar", "preact_resnet18"))


class Check:
    """Where the lines go, the device and how much of everything to run."""

    def __init__(self, out: Path, dry_run: bool):
        self.out, self.dry = out, dry_run
        self.device = torch.device("cpu" if dry_run or not torch.cuda.is_available() else "cuda")
        self.batch = 8 if dry_run else 128
        self.iterations, self.warmup = (2, 1) if dry_run else (10, 3)
        out.mkdir(parents=True, exist_ok=True)

    def record(self, line: dict) -> None:
        line = {"device": str(self.device), "dry_run": self.dry, **line}
        with (self.out / "gpu_check.jsonl").open("a") as handle:
            handle.write(json.dumps(line) + "\n")
        print(json.dumps(line), flush=True)

    def batch_of(self, shape: str):
        channels, size, classes = SHAPES[shape]
        x = torch.rand(self.batch, channels, size, size, device=self.device)
        return x, torch.randint(0, classes, (self.batch,), device=self.device)

    def model(self, shape: str, name: str):
        channels, size, classes = SHAPES[shape]
        if self.dry and name == "wrn28_10":  # the same family, small enough for the CPU
            name, options = "wide_resnet", {"depth": 10, "widen_factor": 1}
        else:
            options = {}
        return create_model(name, num_classes=classes, in_channels=channels, image_size=size,
                            **options).to(self.device)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def peak_mb(self) -> float | None:
        return torch.cuda.max_memory_allocated() / 2**20 if self.device.type == "cuda" else None


def timed(check: Check, step) -> float:
    """Seconds per call of `step`, after the warm-up (compilation happens there)."""
    for _ in range(check.warmup):
        step()
    check.synchronize()
    start = time.perf_counter()
    for _ in range(check.iterations):
        step()
    check.synchronize()
    return (time.perf_counter() - start) / check.iterations


def train_step(check: Check, shape: str, name: str, recipe: str, amp: str, channels_last: bool,
               compiled: bool) -> dict:
    model = check.model(shape, name)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    if compiled:
        compile_model(model, check.device, print)
    objective = build_objective(recipe, eps=8 / 255 if shape == "cifar" else 0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(check.device.type, enabled=amp == "fp16")
    x, y = check.batch_of(shape)
    x = x.to(memory_format=fmt)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if check.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():  # as fit does: the adversary outside autocast, the loss inside
        model.train()
        prepared = objective.step(model, x, y, forward_all=model.forward_all)
        with torch.autocast(check.device.type, dtype=dtype, enabled=dtype is not None):
            loss = objective(prepared)["loss"]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    seconds = timed(check, step)
    return {"images_per_s": round(check.batch / seconds, 1), "peak_mem_mb": check.peak_mb()}


def train_grid(device: torch.device) -> list[tuple[str, str, bool, bool]]:
    """(recipe, amp, channels_last, compile) per model: standard in every AMP mode and layout, then
    the best-guess layout (bf16, channels_last) compiled, and madry eager and compiled there; the
    CPU has AMP off only. Small enough for one 10-minute device command."""
    amps = ("off", "bf16", "fp16") if device.type == "cuda" else ("off",)
    best = "bf16" if device.type == "cuda" else "off"
    grid = [("standard", amp, layout, False) for amp in amps for layout in (False, True)]
    return grid + [("standard", best, True, True), ("madry", best, True, False), ("madry", best, True, True)]


def check_train(check: Check) -> None:
    for (shape, name), (recipe, amp, channels_last, compiled) in itertools.product(
            MODELS, train_grid(check.device)):
        settings = {"step": "train", "data": shape, "model": name, "recipe": recipe, "amp": amp,
                    "channels_last": channels_last, "compile": compiled}
        run_step(check, settings, functools.partial(train_step, check, shape, name, recipe, amp,
                                                    channels_last, compiled))


def check_pgd(check: Check) -> None:
    model = check.model("cifar", "preact_resnet18").eval()
    x, y = check.batch_of("cifar")
    attack = ATTACKS.build("pgd", eps=8 / 255, steps=20)

    def one_pass():
        probe = x.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(model(probe), y).backward()

    pgd = timed(check, lambda: attack(model, x, y))
    passes = 20 * timed(check, one_pass)
    run_step(check, {"step": "pgd", "model": "preact_resnet18"},
             lambda: {"pgd20_s": round(pgd, 4), "twenty_passes_s": round(passes, 4),
                      "ratio": round(pgd / passes, 3)})


def check_autoattack(check: Check) -> None:
    model = check.model("fmnist", "small_cnn").eval()
    x, y = check.batch_of("fmnist")
    for params in ({"impl": "reference"}, {"impl": "robustlab", "precision": "fp32"},
                   {"impl": "robustlab", "precision": "bf16"}):
        attack = ATTACKS.build("autoattack", eps=0.1, **params)

        def measure(attack=attack):
            start = time.perf_counter()
            attack(model, x, y)
            check.synchronize()
            return {"images_per_s": round(len(y) / (time.perf_counter() - start), 1)}

        run_step(check, {"step": "autoattack", **params, "model": "small_cnn (untrained)"}, measure)


def run_step(check: Check, settings: dict, measure) -> None:
    try:
        check.record({**settings, **measure()})
    except (RuntimeError, UserError) as error:  # OOM, a compiler or CUDA failure: recorded, the rest go on
        check.record({**settings, "error": f"{type(error).__name__}: {error}",
                      "where": traceback.format_exc().splitlines()[-3:]})


STEPS = {"train": check_train, "pgd": check_pgd, "autoattack": check_autoattack}


def section(out: Path) -> str:
    """benchmarks/results.md's "## GPU check" from a finished check's OUT (gpu_check.jsonl, and
    steps.jsonl when scripts/gpu_check.sh ran it): every line as measured, errors included."""
    lines = [json.loads(line) for line in (out / "gpu_check.jsonl").read_text().splitlines()]
    steps = out / "steps.jsonl"
    environment = next(line for line in lines if line["step"] == "environment")
    dry = environment["dry_run"]
    where = ("a dry run on this CPU (tiny sizes, 2 iterations: it checks the script, its speeds "
             "mean nothing)" if dry else f"{environment['gpu']} (torch {environment['torch']}, CUDA "
             f"{environment['cuda']})")
    text = ["## GPU check", "",
            f"Command: `{'OUT=DIR bash scripts/gpu_check.sh' + (' --dry-run' if dry else '')}`, then "
            f"`python benchmarks/gpu_check.py --out DIR --section`. Device: {where}.", "",
            "| step | settings | result |", "|---|---|---|"]
    shown = ("step", "device", "dry_run", "where")
    for line in lines[1:]:
        settings = {k: v for k, v in line.items() if k not in shown and k not in RESULTS}
        result = {k: v for k, v in line.items() if k in RESULTS and v is not None}  # no CPU peak
        text.append(f"| {line['step']} | {', '.join(f'{k} {v}' for k, v in settings.items())} "
                    f"| {', '.join(f'{k} {v}' for k, v in result.items())} |")
    if steps.is_file():
        done = [json.loads(line) for line in steps.read_text().splitlines()]
        text += ["", "scripts/gpu_check.sh's steps (exit status, wall seconds): "
                 + "; ".join(f"{d['step']} {d['rc']}, {d['wall_s']} s" for d in done) + "."]
    return "\n".join(wrap_prose(line) for line in text) + "\n"


RESULTS = ("images_per_s", "peak_mem_mb", "pgd20_s", "twenty_passes_s", "ratio", "error")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dry-run", action="store_true", help="the CPU, tiny sizes, 2 iterations")
    parser.add_argument("--only", default=",".join(STEPS), help="comma-separated: " + ", ".join(STEPS))
    parser.add_argument("--section", action="store_true",
                        help="measure nothing: write OUT's lines into benchmarks/results.md")
    args = parser.parse_args()
    if args.section:
        publish(section(args.out), no_write=False)
        return
    check = Check(args.out, args.dry_run)
    check.record({"step": "environment", "torch": torch.__version__, "cuda": torch.version.cuda,
                  "gpu": torch.cuda.get_device_name() if check.device.type == "cuda" else None})
    for name in args.only.split(","):
        STEPS[name.strip()](check)


if __name__ == "__main__":
    main()
