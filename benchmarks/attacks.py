"""Attack throughput: robustlab's FGSM, PGD-20 and CW-L2 (eager and torch.compile'd) against ART's,
torchattacks' and foolbox's in the same process, and PGD against its limit.

The model is small_cnn (default width) on Fashion-MNIST, trained quickly (1 epoch on 8,192
images, so that CW-L2's early abort sees a real decision boundary); batches of 256 test images.
Each attack runs alternately with each peer's equivalent (same eps, steps, step size, random
start), and images/s are medians over repeats, so the ratio ours/peer is what this shared
machine's noise cannot fake. torchattacks installs without torchvision: pip install --no-deps
torchattacks (scipy and tqdm are already here); a peer that is not installed is left out.
The limit: PGD-k can be no faster than k forward + input-backward passes on the same batch,
so wall(PGD-k) / (k x one pass) >= 1 and our overhead is how far above 1 it is (<= 1.10).

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
from robustlab.train.device import compile_model

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


def torchattacks_attacks(model):
    import torchattacks  # installed with --no-deps (it imports without torchvision) + scipy, tqdm

    return {
        "FGSM": torchattacks.FGSM(model, eps=EPS),
        f"PGD-{STEPS}": torchattacks.PGD(model, eps=EPS, alpha=2.5 * EPS / STEPS, steps=STEPS,
                                         random_start=True),
        "CW-L2": torchattacks.CW(model, c=CW["initial_const"], kappa=0, steps=CW["steps"], lr=CW["lr"]),
    }


def foolbox_attacks(model):
    import foolbox

    fmodel = foolbox.PyTorchModel(model, bounds=(0, 1))

    def run(attack, epsilons):
        return lambda x, y: attack(fmodel, x, y, epsilons=epsilons)[1]

    return {
        "FGSM": run(foolbox.attacks.FGSM(random_start=False), EPS),
        f"PGD-{STEPS}": run(foolbox.attacks.LinfPGD(abs_stepsize=2.5 * EPS / STEPS, steps=STEPS,
                                                    random_start=True), EPS),
        "CW-L2": run(foolbox.attacks.L2CarliniWagnerAttack(binary_search_steps=CW["search_steps"],
                                                           steps=CW["steps"], stepsize=CW["lr"],
                                                           initial_const=CW["initial_const"]), None),
    }


def peers(model) -> dict[str, dict]:
    """Every peer library that imports here: {peer: {attack: run(x, y) -> x_adv}}."""
    out = {}
    for peer, make in (("ART", art_attacks), ("torchattacks", torchattacks_attacks),
                       ("foolbox", foolbox_attacks)):
        try:
            attacks = make(model)
        except ImportError as missing:
            print(f"{peer} is not installed ({missing}); left out", file=sys.stderr)
            continue
        if peer == "ART":  # numpy in, numpy out
            attacks = {k: (lambda a, b, f=v: torch.from_numpy(f.generate(a.numpy(), y=b.numpy())))
                       for k, v in attacks.items()}
        out[peer] = attacks
    return out


def ours_attacks():
    # the last iterate, as torchattacks, foolbox and ART return (robustlab's default is the best)
    attacks = {"FGSM": ATTACKS.build("fgsm", eps=EPS),
               f"PGD-{STEPS}": ATTACKS.build("pgd", eps=EPS, steps=STEPS, iterate="last")}
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
    """Every implementation of every attack in turn, each repeat (interleaved, so the machine's
    drift hits all alike): ours eager, ours on the torch.compile'd model, and each peer."""
    load = os.getloadavg()[0]
    model, x, y = quick_model(args.batches * BATCH)
    batches = [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(x), BATCH)]
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    compiled = copy.deepcopy(model)
    compile_model(compiled, torch.device("cpu"), print)
    ours = ours_attacks()
    impls = {"ours": {k: (lambda a, b, f=v: f(model, a, b)) for k, v in ours.items()},
             "ours compiled": {k: (lambda a, b, f=v: f(compiled, a, b)) for k, v in ours.items()},
             **peers(model)}
    for name in ours:  # compiling happens on the first call of each shape: not timed
        impls["ours compiled"][name](*batches[0])
    rows = {name: {impl: [] for impl in impls} | {"acc": {}} for name in ours}
    limit = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for repeat in range(args.repeats):
            for name in ours:
                for impl, attacks in impls.items():
                    slow = name == "CW-L2" and impl not in ("ours", "ours compiled")
                    some = [(xb[:ART_CW_IMAGES], yb[:ART_CW_IMAGES]) for xb, yb in batches[:1]] if slow \
                        else batches
                    speed, acc = images_per_s(model, attacks[name], some)
                    rows[name][impl].append(speed)
                    rows[name]["acc"][impl] = acc
                    print(f"repeat {repeat + 1}/{args.repeats} {name} {impl}: {speed:,.1f} images/s",
                          file=sys.stderr, flush=True)
            # The limit, timed next to the attack it bounds, on the same first batch.
            xb, yb = batches[0]
            unit = one_pass_s(model, xb, yb)
            start = time.perf_counter()
            ours[f"PGD-{STEPS}"](model, xb, yb)
            limit.append((time.perf_counter() - start) / (STEPS * unit))
            print(f"repeat {repeat + 1}/{args.repeats} limit ratio {limit[-1]:.3f}", file=sys.stderr,
                  flush=True)
    return {"clean": clean, "rows": rows, "impls": list(impls), "limit": limit, "images": len(x),
            "threads": torch.get_num_threads(), "unit_ms": unit * 1000, "load": load,
            "load_end": os.getloadavg()[0], "versions": _versions()}


def section(res: dict, command: str) -> str:
    lines = [
        "## Attacks",
        "",
        f"Command: `{command}` ({res['threads']} torch threads; 1-minute load average "
        f"{res['load']:.2f} at the start, {res['load_end']:.2f} at the end). Model: small_cnn "
        "(default width 32), quickly trained (1 epoch, 8,192 images, "
        f"{res['clean']:.1%} clean on the benchmark images); {res['images']} Fashion-MNIST test images in "
        f"batches of {BATCH}; eps {EPS} (L-inf). Each attack runs in turn in one process: ours, ours on "
        f"the torch.compile'd model (inductor; compiled before timing), and the peers "
        f"({', '.join(f'{k} {v}' for k, v in res['versions'].items())}); images/s are medians over "
        f"{len(res['limit'])} repeats, and ours / peer is the ratio of the medians.",
        "",
        "| attack | " + " | ".join(f"{impl} images/s" for impl in res["impls"]) + " | "
        + " | ".join(f"ours / {impl}" for impl in res["impls"][1:]) + " | accuracy under attack |",
        "|---|" + "---|" * (2 * len(res["impls"])),
    ]
    for name, r in res["rows"].items():
        speed = {impl: statistics.median(r[impl]) for impl in res["impls"]}
        accuracy = ", ".join(f"{impl} {a:.1%}" for impl, a in r["acc"].items())
        lines.append(f"| {name} | " + " | ".join(f"{speed[i]:,.0f}" for i in res["impls"]) + " | "
                     + " | ".join(f"**{speed['ours'] / speed[i]:.2f}**" for i in res["impls"][1:])
                     + f" | {accuracy} |")
    lim = statistics.median(res["limit"])
    lines += [
        "",
        f"FGSM: one step of eps. PGD-{STEPS}: random start, step 2.5 eps / {STEPS} (ART: "
        f"num_random_init=1, same eps_step). CW-L2: {CW['steps']} iterations x {CW['search_steps']} "
        f"constants from c = {CW['initial_const']}, learning rate {CW['lr']} (ours: Adam with per-sample "
        "early abort; ART: its line search; torchattacks: one constant c, no search; foolbox: its binary "
        "search), a small equal budget, not the attack's defaults; the peers' CW-L2 is timed (and its "
        f"accuracy taken) on the first {ART_CW_IMAGES} images only (ART's is too slow for the whole "
        "batch). At this tiny budget the accuracies say little about strength; "
        "tests/test_attacks_oracle.py compares both attacks at their defaults.",
        "",
        f"Limit: PGD-{STEPS} wall time / ({STEPS} x one forward + input-backward pass on the same batch of "
        f"{BATCH}, {res['unit_ms']:.1f} ms) = **{lim:.3f}** (target <= 1.10; repeats: "
        f"{', '.join(f'{v:.3f}' for v in res['limit'])}).",
        "",
    ]
    return "\n".join(wrap_prose(line) for line in lines)


def _versions() -> dict[str, str]:
    """The peers' versions (those installed)."""
    import importlib.metadata

    out = {}
    for peer, dist in (("ART", "adversarial-robustness-toolbox"), ("torchattacks", "torchattacks"),
                       ("foolbox", "foolbox")):
        try:
            out[peer] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


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
