"""AutoAttack's cost and answer: the reference implementation against `impl=robustlab` (the same
reference attacks on the model with BatchNorm folded into its convolutions; with precision bf16,
APGD and Square under bfloat16 autocast), on the same images of a robust model, interleaved.

The model is madry's small_cnn trained as the small reproduction trains it (configs/madry_fmnist.yaml,
10,000 images x 2 epochs; cached under runs/bench/autoattack), or any run given with --run. The
first N test images are split into chunks; each chunk is attacked by every implementation in
turn, so that the machine's load falls on all alike. Each image's verdict (robust: the model as it
is still classifies the returned example correctly) is compared with the reference's on the same
image: the paired difference, its exact McNemar p-value, and the two discordant counts.

    python benchmarks/attacks.py           # the other attacks
    python benchmarks/autoattack.py [--images 200] [--chunk 100] [--run RUN] [--no-write]

writes the "## AutoAttack" section of benchmarks/results.md (replacing it if present).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from results_file import command_line, publish, wrap_prose

from robustlab.attacks.autoattack import AutoAttack
from robustlab.attacks.threat import Threat
from robustlab.config import load_config
from robustlab.eval.stats import Paired
from robustlab.experiment import load_data, train
from robustlab.experiment.build import load_run
from robustlab.models.attack_copy import fold_batchnorm, in_bfloat16

EPS = 0.1
IMPLS = {"reference": dict(impl="reference"), "robustlab fp32": dict(impl="robustlab", precision="fp32"),
         "robustlab bf16": dict(impl="robustlab", precision="bf16")}
CACHE = Path("runs/bench/autoattack")


def robust_model(run: str | None):
    if run is None:
        cfg = load_config("configs/madry_fmnist.yaml",
                          ["name=madry", f"out_dir={CACHE}", "data.train_limit=10000", "train.epochs=2"])
        train(cfg, resume=True, force=False, log=lambda _: None)
        run = str(CACHE / "madry")
    loaded = load_run(run)
    loaded.cfg.data.test_limit = None
    return loaded.model.eval(), load_data(loaded.cfg).test


def pass_ratios(model, x, y, reps: int = 10) -> dict[str, tuple[float, float]]:
    """Seconds per forward + input-backward and per forward of each attack copy, interleaved."""
    folded = fold_batchnorm(model)
    models = {"reference": model, "robustlab fp32": folded, "robustlab bf16": in_bfloat16(folded)}

    def grad_pass(m):
        xi = x.clone().requires_grad_()
        torch.autograd.grad(F.cross_entropy(m(xi), y), xi)

    def forward(m):
        with torch.no_grad():
            m(x)

    times = {k: ([], []) for k in models}
    for r in range(reps + 2):
        for name, m in models.items():
            for slot, run in enumerate((grad_pass, forward)):
                t = time.perf_counter()
                run(m)
                if r >= 2:  # the first two rounds warm up
                    times[name][slot].append(time.perf_counter() - t)
    return {k: (statistics.median(a), statistics.median(b)) for k, (a, b) in times.items()}


def measure(args) -> dict:
    model, test = robust_model(args.run)
    for p in model.parameters():
        p.requires_grad_(False)
    x, y = test.images[:args.images].float() / 255, test.labels[:args.images]
    load = os.getloadavg()[0]
    passes = pass_ratios(model, x[:128], y[:128])
    seconds = {k: 0.0 for k in IMPLS}
    robust = {k: [] for k in IMPLS}
    for start in range(0, len(x), args.chunk):
        xc, yc = x[start:start + args.chunk], y[start:start + args.chunk]
        for name, params in IMPLS.items():
            t = time.perf_counter()
            adv = AutoAttack(Threat("linf", EPS), **params)(model, xc, yc)
            seconds[name] += time.perf_counter() - t
            with torch.no_grad():
                robust[name].append(model(adv).argmax(1) == yc)
            print(f"images {start}-{start + len(xc)}: {name} {seconds[name]:.0f} s", flush=True)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    return {"images": len(x), "chunk": args.chunk, "clean": clean, "load": load,
            "load_end": os.getloadavg()[0],
            "threads": torch.get_num_threads(), "passes": passes, "seconds": seconds,
            "robust": {k: torch.cat(v) for k, v in robust.items()}, "run": args.run}


def section(res: dict, command: str) -> str:
    ref = res["robust"]["reference"]
    n = res["images"]
    model = f"the run {res['run']}" if res["run"] else (
        "madry's small_cnn trained as the small reproduction trains it (10,000 images x 2 epochs)")
    lines = [
        "## AutoAttack",
        "",
        f"Command: `{command}` ({res['threads']} torch threads; 1-minute load average {res['load']:.2f} at "
        f"the start, {res['load_end']:.2f} at the end). Model: {model}, {res['clean']:.1%} clean on the "
        f"first {n} Fashion-MNIST test images, which every implementation attacks (standard version, "
        f"L-inf eps {EPS}, seed 0, chunks of {res['chunk']} images attacked by each implementation in "
        "turn). Verdicts are the model's own on the returned examples, compared image by image with the "
        "reference's: the paired difference with its 95% CI (Newcombe) and exact McNemar p, and the "
        "discordant images (robust under the implementation but broken by the reference, and the reverse).",
        "",
        "| implementation | images/s | speed-up | robust accuracy | - reference (95% CI, McNemar) "
        "| robust here, broken by reference | broken here, robust under reference |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, mask in res["robust"].items():
        speed = n / res["seconds"][name]
        up = res["seconds"]["reference"] / res["seconds"][name]
        t = Paired.of(ref, mask)
        lo, hi = t.ci()
        diff = ("-" if name == "reference"
                else f"{t.difference:+.1%} [{lo:+.1%}, {hi:+.1%}], p {t.p_value:.2g}")
        lines.append(f"| {name} | {speed:.2f} | **{up:.2f}x** | {mask.float().mean():.1%} | {diff} "
                     f"| {t.gained} | {t.lost} |")
    base_g, base_f = res["passes"]["reference"]
    lines += [
        "",
        "One pass of the model on 128 of these images, medians of 10 interleaved repeats (speed-up over "
        "the model as it is): " + "; ".join(
            f"{name}: forward + input-backward {base_g / g:.2f}x, forward {base_f / f:.2f}x"
            for name, (g, f) in res["passes"].items() if name != "reference") + ".",
        "",
        "The whole attack gains what its passes gain, less: AutoAttack on a robust model is almost all "
        "forward and backward passes of the model (the 4 attacks keep every robust image), so a 2x "
        "faster AutoAttack with the same verdicts needs passes about 2x cheaper; the cheapest pass here "
        f"(bf16, {base_g / res['passes']['robustlab bf16'][0]:.2f}x / "
        f"{base_f / res['passes']['robustlab bf16'][1]:.2f}x) is not, and skipping passes would change "
        "the attack.",
        "",
    ]
    return "\n".join(wrap_prose(line) for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--chunk", type=int, default=100, help="images per AutoAttack call")
    parser.add_argument("--run", help="a trained run directory (default: madry, trained and cached)")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args()
    publish(section(measure(args), command_line(parser, args)), args.no_write)


if __name__ == "__main__":
    main()
