"""What the paired statistics cost, next to the attacks they judge (issue 23).

Each statistic the results page computes, timed alone on inputs of the medium budget's sizes
(robustlab.eval.stats; seconds per call, median of --repeats): the exact McNemar test with
Newcombe's interval on 4,000 images' outcomes, Holm over 32 p-values, the detectable difference,
and the paired bootstrap (2,000 resamples) of a detection AUC and of a mean distortion on 50 and
200 images. With --run, a finished reproduction: building its whole results page (reading the
reports, every verdict, rendering) against the seconds its attacks took (reproduce.json).

    python benchmarks/statistics_cost.py [--run RUN_DIR] [--repeats 5] [--no-write]

writes the "## Statistics" section of benchmarks/results.md (replacing it if present).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from results_file import command_line, median_seconds, publish, wrap_prose

from robustlab.detectors import detection_auc
from robustlab.eval.stats import Paired, detectable_difference, holm, paired_bootstrap
from robustlab.reproduce.pages import is_eval, write_pages


def primitives(repeats: int) -> list[tuple[str, float]]:
    """(what, seconds per call) for each statistic on inputs of the medium budget's sizes."""
    import torch

    rng = np.random.default_rng(0)
    reference = torch.from_numpy(rng.random(4000) < 0.6)
    new = reference ^ torch.from_numpy(rng.random(4000) < 0.2)  # 20% discordant

    def mcnemar_and_ci():
        t = Paired.of(reference, new)
        return t.p_value, t.ci()

    rows = [("McNemar exact test + Newcombe interval, 4,000 images", median_seconds(mcnemar_and_ci, repeats)),
            ("Holm over 32 p-values", median_seconds(lambda: holm(list(rng.random(32))), repeats)),
            ("detectable difference (80% power)",
             median_seconds(lambda: detectable_difference(4000, 0.2), repeats))]
    for n in (50, 200):
        rows += bootstraps(rng, n, repeats)
    return rows


def bootstraps(rng: np.random.Generator, n: int, repeats: int) -> list[tuple[str, float]]:
    """The paired bootstraps of the detection numbers (2,000 resamples of n images)."""
    clean, adversarial, distortion = rng.normal(size=n), rng.normal(0.5, size=n), rng.random(n)
    auc = (lambda w: detection_auc(clean, adversarial, w), lambda w: detection_auc(adversarial, clean, w))
    mean = (lambda w: float(np.average(distortion, weights=w)),
            lambda w: float(np.average(1 - distortion, weights=w)))
    return [(f"paired bootstrap of a {what}, {n} images x 2,000 resamples",
             median_seconds(lambda pair=pair: paired_bootstrap(*pair, n), repeats))
            for what, pair in (("detection AUC", auc), ("mean distortion", mean))]


def page(run: Path, repeats: int) -> tuple[float, float, int]:
    """(seconds to build the run's results page, seconds its attacks took, claims evaluated)."""
    status = json.loads((run / "reproduce.json").read_text())
    attacks = sum(record.get("seconds", 0.0) for phases in status["recipes"].values()
                  for phase, record in phases.items() if is_eval(phase) or phase == "detect")
    with tempfile.TemporaryDirectory() as tmp:
        built = median_seconds(lambda: write_pages(status, run, Path(tmp) / "results.md"), repeats)
    return built, attacks, len(status["recipes"])


def section(rows: list[tuple[str, float]], run: tuple[float, float, int] | None, command: str) -> str:
    lines = ["## Statistics", "",
             f"Command: `{command}`. Seconds per call, medians; each statistic alone on inputs of the "
             "medium budget's sizes (robustlab.eval.stats, scipy.stats.binomtest for McNemar):", "",
             "| statistic | seconds |", "|---|---|"]
    lines += [f"| {what} | {s:.2g} |" for what, s in rows]
    if run is not None:
        built, attacks, recipes = run
        lines += [
            "",
            f"The whole results page of the reproduction (reading {recipes} recipes' reports, every "
            f"verdict with its bootstrap, rendering md/html/json) takes {built:.1f} s, against "
            f"{attacks:.0f} s of attacks and detection in that run: the statistics cost "
            f"{100 * built / attacks:.2g}% of the evaluation they judge."]
    lines.append("")
    return "\n".join(wrap_prose(line) for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="a finished reproduction's directory")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args()
    run = page(Path(args.run), args.repeats) if args.run else None
    publish(section(primitives(args.repeats), run, command_line(parser, args)), args.no_write)


if __name__ == "__main__":
    main()
