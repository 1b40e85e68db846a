"""Indicators of attack failure (Pintor et al. 2022) on a madry and a standard small_cnn: each
indicator's share of the robust points per attack of the papers suite, PGD-20's robust accuracy
with the last iterate and with the best one (the mitigation of silent success, paired on the same
images), and what the indicators cost next to the suite.

    robustlab train --config configs/madry_fmnist.yaml data.train_limit=10000 train.epochs=2 \\
        train.monitor_images=0 out_dir=runs/indicators name=madry      (and standard_fmnist.yaml)
    python benchmarks/indicators.py --runs runs/indicators/madry runs/indicators/standard

AutoAttack is left out of the suite here (its reference code records no path, and on 1,000 images
it alone would take about 50 minutes per model on this machine); every other column runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from defenses import attack_first  # benchmarks/defenses.py (this folder is on sys.path)
from results_file import command_line, publish

from robustlab.eval.indicators import PROBED
from robustlab.eval.stats import Paired, detectable_difference
from robustlab.eval.suite import load_suite
from robustlab.experiment import evaluate_suite
from robustlab.report.render import INDICATOR_HEAD, indicator_rows, md_table

EPS = 0.1


def best_vs_last(run: Path, n: int) -> dict:
    """PGD-20 (the papers suite's: step 0.25 eps) returning the last iterate, then the best one,
    on the same first n test images: accuracies, the paired test and the seconds of each."""
    results = {}
    for iterate in ("last", "best"):
        start = time.perf_counter()
        result = attack_first(run, "pgd", n, steps=20, step_size=0.25 * EPS, iterate=iterate)
        results[iterate] = (result, time.perf_counter() - start)
    last, best = results["last"][0], results["best"][0]
    paired = Paired.of(last.per_sample["robust"], best.per_sample["robust"])
    return {"last": last.robust_accuracy, "best": best.robust_accuracy, "paired": paired,
            "seconds": (results["last"][1], results["best"][1])}


def run_section(run: Path, suite, images: int) -> list[str]:
    """One model's table, probe line, verdict and the best-vs-last paired line."""
    with tempfile.TemporaryDirectory() as out:
        report = evaluate_suite(run, suite, limit=images, out=out, log=lambda _: None)
    section, probe = report["indicators"], report["indicators"]["probe"]
    attacks_s = sum(a["seconds"] for a in report["attacks"])
    counts = ", ".join(f"{name.replace('_', ' ')} {probe['counts'][name]}" for name in PROBED)
    lines = ["", f"### {run.name}", "",
             f"Clean {100 * report['clean_accuracy']:.1f}%, worst case over the suite "
             f"{100 * report['worst_case']['accuracy']:.1f}%.", "",
             md_table(INDICATOR_HEAD, indicator_rows(report)), "",
             f"Probe of the {probe['points']} points counted robust (worst case): {counts}; mean relative "
             f"margin change {probe['unstable_mean']:.4f} (threshold {section['thresholds']['unstable']}). "
             f"Probe {section['seconds']:.1f} s against {attacks_s:.0f} s of attacks "
             f"({100 * section['seconds'] / attacks_s:.1f}% of the suite).", ""]
    lines += [f"- {line}" for line in section["verdict"]]
    change = best_vs_last(run, images)
    p = change["paired"]
    lo, hi = p.ci()
    detectable = detectable_difference(p.n, (p.gained + p.lost) / p.n)
    lines += ["", f"PGD-20, last iterate {100 * change['last']:.1f}% -> best iterate "
              f"{100 * change['best']:.1f}% ({100 * p.difference:+.1f} points, 95% CI [{100 * lo:+.1f}, "
              f"{100 * hi:+.1f}], exact McNemar p {p.p_value:.2g}; {p.lost} images robust only under the "
              f"last iterate, {p.gained} only under the best; detectable at 80% power on these images: "
              f"{100 * detectable:.1f} points). Seconds: last {change['seconds'][0]:.1f}, best "
              f"{change['seconds'][1]:.1f} (the extra forward of x_T)."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="indicators.py", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["runs/indicators/madry", "runs/indicators/standard"])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only; leave results.md as it is")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    papers = load_suite("papers")
    suite = papers.only([a.label for a in papers.attacks if a.attack != "autoattack"])
    lines = ["## Indicators of attack failure (Pintor et al. 2022)", "",
             f"Command: `{command_line(parser, args)}`. Fashion-MNIST, the first {args.images} test images, "
             f"eps {EPS}, {args.threads} threads, alone on the machine. Counts are of each attack's robust "
             "points (clean-correct and still correct); \"-\" where the attack records no path (its "
             "indicator does not apply). One trained model per recipe (one seed): the shares describe "
             "these networks."]
    for run in map(Path, args.runs):
        lines += run_section(run, suite, args.images)
    publish("\n".join(lines), args.no_write)


if __name__ == "__main__":
    main()
