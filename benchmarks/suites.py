"""Evaluation suites: wall time of each suite on a standard and a Madry small_cnn, and how the
work scales with the number of attacks.

    python benchmarks/suites.py [--models standard madry] [--suites quick autoattack papers full]
                                [--images 1000] [--full-images 200] [--no-write]

The models are benchmarks/defenses.py's runs (runs/bench_defenses/<recipe>, Fashion-MNIST,
eps 0.1). Each suite runs through `robustlab.experiment.evaluate_suite` on the first N test
images; `full` (Square-5000, SPSA-100 and a transfer attack on top of `papers`) runs on fewer
images (`--full-images`). The scaling column is suite time / sum of its attacks' own times:
close to 1 means the work is the attacks, and a suite costs what its attacks cost.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from results_file import wrap_prose, write_section

from robustlab.experiment import evaluate_suite

RUNS = Path("runs/bench_defenses")
OUT = Path("runs/bench_suites")


def measure(model: str, suite: str, images: int) -> dict:
    out = OUT / model / suite
    done = out / "bench.json"
    if done.is_file():
        saved = json.loads(done.read_text())
        if saved["images"] == images:
            return saved
    state = out / "state.pt"
    if state.exists():  # time a fresh evaluation, not a resumed one
        state.unlink()
    start = time.perf_counter()
    report = evaluate_suite(RUNS / model, suite, limit=images, out=str(out), log=lambda _: None)
    seconds = time.perf_counter() - start
    attack_seconds = sum(a["seconds"] for a in report["attacks"])
    result = {"model": model, "suite": suite, "images": images, "attacks": len(report["attacks"]),
              "seconds": seconds, "attack_seconds": attack_seconds,
              "clean": report["clean_accuracy"], "worst_case": report["worst_case"]["accuracy"],
              "slowest": max(report["attacks"], key=lambda a: a["seconds"])["label"],
              "verdict": report["masking"]["verdict"].split(":")[0]}
    done.write_text(json.dumps(result, indent=1))
    return result


def section(results: list[dict]) -> str:
    lines = [
        "## Evaluation suites",
        "",
        f"`python benchmarks/suites.py` ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}): each suite on the first N "
        "Fashion-MNIST test images, eps 0.1, small_cnn trained 2 epochs by "
        "`benchmarks/defenses.py table` (standard and madry). Time is the whole `evaluate_suite` "
        "call; scaling = suite time / sum of its attacks' times (the rest is the clean pass, the "
        "masking probes and the large-eps check).",
        "",
        "| model | suite | images | attacks | time | per attack | scaling | worst case | slowest attack |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['suite']} | {r['images']} | {r['attacks']} | {r['seconds'] / 60:.1f} min | "
            f"{r['seconds'] / r['attacks']:.0f} s | {r['seconds'] / max(1e-9, r['attack_seconds']):.2f} | "
            f"{100 * r['worst_case']:.1f}% | {r['slowest']} |")
    lines.append("")
    return "\n".join(wrap_prose(line) for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["standard", "madry"])
    parser.add_argument("--suites", nargs="+", default=["quick", "autoattack", "papers", "full"])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--full-images", type=int, default=200)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    results = []
    for model in args.models:
        for suite in args.suites:
            results.append(measure(model, suite, args.full_images if suite == "full" else args.images))
            print(json.dumps(results[-1]), flush=True)
            if not args.no_write:
                write_section(section(results))
    print(section(results))


if __name__ == "__main__":
    main()
