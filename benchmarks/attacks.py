"""Attack throughput: robustlab's FGSM, PGD-20 and CW-L2 against ART's in the same process, and
PGD against its limit.

The model is small_cnn (default width) on Fashion-MNIST, trained quickly (1 epoch on 8,192
images, so that CW-L2's early abort sees a real decision boundary); batches of 256 test images.
Each attack runs alternately with ART's equivalent (same eps, steps, step size, random start), and
images/s are medians over repeats, so the ratio ours/ART is what this shared machine's noise
cannot fake. The limit: PGD-k can be no faster than k forward + input-backward passes on the same
batch, so wall(PGD-k) / (k x one pass) >= 1 and our overhead is how far above 1 it is (<= 1.10).

    python benchmarks/attacks.py [--batches 1] [--repeats 3] [--no-write]

writes the "## Attacks" section of benchmarks/results.md (replacing it if present).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F
from results_file import wrap_prose, write_section
from torch import nn

from robustlab.attacks import ATTACKS
from robustlab.config import load_config
from robustlab.experiment import load_data, train

BATCH, EPS, STEPS = 256, 0.1, 20
CW = dict(steps=10, search_steps=5, initial_const=0.01, lr=0.01)  # a small equal budget for both
ART_CW_IMAGES = 32  # ART's CW-L2 runs at a few images/s here: time it on the first 32 images only


def quick_model(n_test: int):
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, ["train.epochs=1", "data.train_limit=8192", f"data.test_limit={n_test}",
                                 f"out_dir={tmp}", "name=bench"])
        model = train(cfg, log=lambda _: None).model.cpu().eval().to(memory_format=torch.contiguous_format)
        test = load_data(cfg).test
    return model, test.images.float() / 255, test.labels


def art_attacks(model):
    from art.attacks.evasion import CarliniL2Method, FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(copy.deepcopy(model), loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                            nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu")
    return {
        "FGSM": FastGradientMethod(clf, eps=EPS, batch_size=BATCH),
        f"PGD-{STEPS}": ProjectedGradientDescent(clf, eps=EPS, eps_step=2.5 * EPS / STEPS, max_iter=STEPS,
                                                 num_random_init=1, batch_size=BATCH, verbose=False),
        "CW-L2": CarliniL2Method(clf, max_iter=CW["steps"], binary_search_steps=CW["search_steps"],
                                 initial_const=CW["initial_const"], learning_rate=CW["lr"],
                                 batch_size=BATCH, verbose=False),
    }


def ours_attacks():
    attacks = {"FGSM": ATTACKS.build("fgsm", eps=EPS),
               f"PGD-{STEPS}": ATTACKS.build("pgd", eps=EPS, steps=STEPS)}
    if "cw_l2" in ATTACKS:
        attacks["CW-L2"] = ATTACKS.build("cw_l2", **CW)
    return attacks


def images_per_s(model, run, batches) -> tuple[float, float]:
    """(images/s, robust accuracy of `model`) of `run(x, y) -> x_adv` over the batches."""
    start = time.perf_counter()
    adv = [(run(x, y), y) for x, y in batches]
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        correct = sum(int((model(x_adv).argmax(1) == y).sum()) for x_adv, y in adv)
    n = sum(len(y) for _, y in adv)
    return n / elapsed, correct / n


def one_pass_s(model, x, y, reps: int = 30) -> float:
    """Median time of one forward + input-backward pass (the unit PGD repeats)."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        xr = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(args) -> dict:
    load = os.getloadavg()[0]
    model, x, y = quick_model(args.batches * BATCH)
    batches = [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(x), BATCH)]
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    ours, theirs = ours_attacks(), art_attacks(model)
    rows = {name: {"ours": [], "art": [], "acc_ours": None, "acc_art": None} for name in ours}
    limit = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for repeat in range(args.repeats):
            for name, attack in ours.items():
                speed, acc = images_per_s(model, lambda a, b, f=attack: f(model, a, b), batches)
                rows[name]["ours"].append(speed)
                rows[name]["acc_ours"] = acc
                art = theirs[name]
                art_batches = [(xb[:ART_CW_IMAGES], yb[:ART_CW_IMAGES]) for xb, yb in batches[:1]] \
                    if name == "CW-L2" else batches
                speed, acc = images_per_s(
                    model, lambda a, b, f=art: torch.from_numpy(f.generate(a.numpy(), y=b.numpy())),
                    art_batches)
                rows[name]["art"].append(speed)
                rows[name]["acc_art"] = acc
                print(f"repeat {repeat + 1}/{args.repeats} {name}: ours {rows[name]['ours'][-1]:,.1f} "
                      f"images/s, ART {speed:,.1f} images/s", file=sys.stderr, flush=True)
            # The limit, timed next to the attack it bounds, on the same first batch.
            xb, yb = batches[0]
            unit = one_pass_s(model, xb, yb)
            start = time.perf_counter()
            ours[f"PGD-{STEPS}"](model, xb, yb)
            limit.append((time.perf_counter() - start) / (STEPS * unit))
            print(f"repeat {repeat + 1}/{args.repeats} limit ratio {limit[-1]:.3f}", file=sys.stderr,
                  flush=True)
    return {"clean": clean, "rows": rows, "limit": limit, "images": len(x),
            "threads": torch.get_num_threads(), "unit_ms": unit * 1000, "load": load,
            "load_end": os.getloadavg()[0]}


def section(res: dict, command: str) -> str:
    lines = [
        "## Attacks",
        "",
        f"Command: `{command}` ({res['threads']} torch threads; 1-minute load average "
        f"{res['load']:.2f} at the start, {res['load_end']:.2f} at the end). Model: small_cnn "
        "(default width 32), quickly trained (1 epoch, 8,192 images, "
        f"{res['clean']:.1%} clean on the benchmark images); {res['images']} Fashion-MNIST test images in "
        f"batches of {BATCH}; eps {EPS} (L-inf). ART {_art_version()} runs the same attacks alternately "
        f"in the same process; medians over {len(res['limit'])} repeats.",
        "",
        "| attack | ours images/s | ART images/s | ours/ART | accuracy under attack, ours / ART |",
        "|---|---|---|---|---|",
    ]
    for name, r in res["rows"].items():
        o, a = statistics.median(r["ours"]), statistics.median(r["art"])
        lines.append(f"| {name} | {o:,.0f} | {a:,.0f} | **{o / a:.2f}** | "
                     f"{r['acc_ours']:.1%} / {r['acc_art']:.1%} |")
    lim = statistics.median(res["limit"])
    lines += [
        "",
        f"FGSM: one step of eps. PGD-{STEPS}: random start, step 2.5 eps / {STEPS} (ART: "
        f"num_random_init=1, same eps_step). CW-L2: {CW['steps']} iterations x {CW['search_steps']} "
        f"constants from c = {CW['initial_const']}, learning rate {CW['lr']} (ours: Adam with per-sample "
        "early abort; ART: its line search), a small equal budget, not the attack's defaults; ART's "
        f"CW-L2 is timed (and its accuracy taken) on the first {ART_CW_IMAGES} images only (it is too slow "
        "for the whole batch). At this tiny budget the accuracies say little about strength; "
        "tests/test_attacks_oracle.py compares both attacks at their defaults.",
        "",
        f"Limit: PGD-{STEPS} wall time / ({STEPS} x one forward + input-backward pass on the same batch of "
        f"{BATCH}, {res['unit_ms']:.1f} ms) = **{lim:.3f}** (target <= 1.10; repeats: "
        f"{', '.join(f'{v:.3f}' for v in res['limit'])}).",
        "",
    ]
    return "\n".join(wrap_prose(line) for line in lines)


def _art_version() -> str:
    import art

    return art.__version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=1, help="batches of 256 test images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args()
    res = measure(args)
    command = "python benchmarks/attacks.py" + "".join(
        f" --{k} {v}" for k, v in (("batches", args.batches), ("repeats", args.repeats)) if v != {
            "batches": 1, "repeats": 3}[k])
    text = section(res, command)
    print(text)
    print(f"# python {platform.python_version()}, torch {torch.__version__}", file=sys.stderr)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
