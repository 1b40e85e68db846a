"""What torch.compile buys on this machine: compiled / eager for a training step (standard and
madry's PGD-7 step) and for an evaluation suite, measured in turn in one process.

Training: `fit` with train.compile false and true, 2 epochs of `--batches` batches of 128
Fashion-MNIST images each; the ratio is of epoch 2's images/s (epoch 1 pays the compilation).
Suite: `robustlab eval --suite quick --limit 500` of the standard run, eager and with --compile,
compilation included (that is what a user waits for). The PGD-20 ratio is benchmarks/attacks.py's.

    python benchmarks/compile.py [--batches 40] [--repeats 2] [--no-write]

writes the "## Compile" section of benchmarks/results.md (replacing it if present).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from results_file import command_line, publish, wrap_prose

from robustlab.config import load_config
from robustlab.experiment import train
from robustlab.experiment.evaluate import evaluate_suite

CONFIGS = Path(__file__).parents[1] / "configs"


def epoch2_rate(recipe: str, out: str, name: str, compiled: bool, batches: int) -> float:
    cfg = load_config(CONFIGS / f"{recipe}_fmnist.yaml", [
        f"out_dir={out}", f"name={name}", "train.epochs=2", f"data.train_limit={batches * 128}",
        "data.test_limit=500", "train.monitor_images=0", f"train.compile={str(compiled).lower()}"])
    return train(cfg, log=lambda _: None).history[-1]["images_per_s"]


def suite_seconds(run: Path, compiled: bool, out: str) -> float:
    start = time.perf_counter()
    evaluate_suite(run, "quick", limit=500, out=out, compile=compiled, log=lambda _: None)
    return time.perf_counter() - start


def measure(args) -> dict:
    load = os.getloadavg()[0]
    rates = {(recipe, c): [] for recipe in ("standard", "madry") for c in (False, True)}
    suite = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for (recipe, compiled), got in rates.items():
                got.append(epoch2_rate(recipe, tmp, f"{recipe}_{compiled}_{repeat}", compiled, args.batches))
                print(recipe, "compiled" if compiled else "eager", f"{got[-1]:.0f} img/s", flush=True)
            for compiled, got in suite.items():
                got.append(suite_seconds(Path(tmp) / f"standard_False_{repeat}", compiled,
                                         f"{tmp}/report_{compiled}_{repeat}"))
                print("suite", "compiled" if compiled else "eager", f"{got[-1]:.0f} s", flush=True)
    return {"load": load, "load_end": os.getloadavg()[0], "threads": torch.get_num_threads(),
            "batches": args.batches, "rates": rates, "suite": suite}


def section(res: dict, command: str) -> str:
    lines = [
        "## Compile",
        "",
        f"Command: `{command}` ({res['threads']} torch threads; 1-minute load average {res['load']:.2f} "
        f"at the start, {res['load_end']:.2f} at the end; torch {torch.__version__}, inductor on the CPU). "
        "Compiled / eager, measured in turn in one process, medians over "
        f"{len(res['suite'][False])} repeats (> 1: compile pays):",
        "",
        "| work | eager | compiled | compiled / eager | repeats (eager; compiled) |",
        "|---|---|---|---|---|",
    ]
    for recipe in ("standard", "madry"):
        e, c = res["rates"][(recipe, False)], res["rates"][(recipe, True)]
        lines.append(f"| training step, {recipe} (epoch 2 of {res['batches']} batches of 128; images/s) "
                     f"| {statistics.median(e):.0f} | {statistics.median(c):.0f} "
                     f"| **{statistics.median(c) / statistics.median(e):.2f}** "
                     f"| {', '.join(f'{v:.0f}' for v in e)}; {', '.join(f'{v:.0f}' for v in c)} |")
    e, c = res["suite"][False], res["suite"][True]
    lines += [
        f"| quick suite on 500 images, compilation included (seconds) | {statistics.median(e):.0f} "
        f"| {statistics.median(c):.0f} | **{statistics.median(e) / statistics.median(c):.2f}** "
        f"| {', '.join(f'{v:.0f}' for v in e)}; {', '.join(f'{v:.0f}' for v in c)} |",
        "",
    ]
    return "\n".join(wrap_prose(line) for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args()
    publish(section(measure(args), command_line(parser, args)), args.no_write)


if __name__ == "__main__":
    main()
