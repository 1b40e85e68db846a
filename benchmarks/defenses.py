"""Defense recipes: what one training step costs, and how robust each recipe's model is.

    python benchmarks/defenses.py cost  [--repeats 5] [--no-write]
    python benchmarks/defenses.py table [--epochs 2] [--recipes standard madry ...] [--no-write]
    python benchmarks/defenses.py ablation [--epochs 2] [--attack-images 1000] [--aa-images 100]
    python benchmarks/defenses.py attention [--epochs 2] [--attack-images 1000] [--aa-images 100]

`cost` times, on one batch of 128 Fashion-MNIST images and small_cnn, one training step of each
recipe against its parts in the same run: madry's step / (k attack steps + 1 training step)
is robustlab's overhead over the work PGD-k training cannot avoid (target <= 1.10), and each
recipe's step time / madry's is its relative cost. Medians over repeats, interleaved.

`table` trains every recipe from configs/<recipe>_fmnist.yaml for the same number of epochs
(runs/bench_defenses/<recipe>, resumable: finished runs and evaluations are kept) and reports
clean accuracy on the 10,000 test images, PGD-20 and AutoAttack (standard version) accuracy on
the first 1,000 (`--attack-images`, `--aa-images`), all at eps 0.1. Each writes its section of
benchmarks/results.md.

`ablation` is AGKD-BML's Table 2 on Fashion-MNIST: standard, madry, sml and the AGKD-BML family
(bml, agkd, agkd_bml, agkd_bml_7), trained as `table` does (the same runs, reused), under FGSM,
PGD-20, CW-20 (PGD on the CW margin) and AutoAttack, with each recipe's step cost relative to
madry from `cost`.

`attention` is the ATAT Table 1 and AAD Table 6 / Table 7 layouts: standard, madry, alp, atat,
aad_madry and aad_alp under FGSM, I-FGSM-20, PGD-7/10/20/40/100, CW-10/20/40/100 and AutoAttack,
and each model under Iter-StepLL and PGD with and without the A3 attention term.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from results_file import median_seconds, wrap_prose, write_section

from robustlab.attacks import ATTACKS
from robustlab.attacks.base import input_grad
from robustlab.config import load_config
from robustlab.data import Batches, ClassIndex
from robustlab.defenses import FrozenTeacher, build_objective
from robustlab.eval import attack_batches
from robustlab.experiment import evaluate_clean, load_data, load_run, train
from robustlab.io import atomic_write_text
from robustlab.models.modes import frozen_eval
from robustlab.train.optim import build_optimizer

EPS = 0.1
RECIPES = ["standard", "madry", "trades", "alp", "mart", "sml", "kurakin", "fast_at",
           "bml", "agkd", "agkd_bml", "agkd_bml_7", "atat", "aad_madry", "aad_alp"]
ABLATION = ["standard", "madry", "sml", "bml", "agkd", "agkd_bml"]
ATTENTION = ["standard", "madry", "alp", "atat", "aad_madry", "aad_alp"]
OUT = Path("runs/bench_defenses")


# ---- cost ------------------------------------------------------------------------------------

def cost(repeats: int) -> dict:
    cfg = load_config("configs/standard_fmnist.yaml", ["data.train_limit=128"])
    ds = load_data(cfg)
    from robustlab.experiment import build_model

    model = build_model(cfg, ds).to(memory_format=torch.channels_last).train()
    x = (ds.train.images[:128].float() / 255).to(memory_format=torch.channels_last)
    y = ds.train.labels[:128]
    optimizer = build_optimizer(cfg.optim, model)
    # The teacher's weights do not change its cost; the partners come from the same 128 images.
    teacher = FrozenTeacher(build_model(cfg, ds))
    class_index = ClassIndex(ds.train)

    def train_step(objective) -> None:
        step = objective.step(model, x, y, teacher=teacher)
        for _ in range(objective.replays):
            loss = objective(step)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def attack_step() -> None:  # one PGD iteration's unavoidable work: forward + input backward
        with frozen_eval(model), torch.enable_grad():
            xr = x.clone().requires_grad_(True)
            input_grad(torch.nn.functional.cross_entropy(model(xr), y, reduction="none"), xr)

    objectives = {r: build_objective(r, eps=EPS) for r in RECIPES}
    for objective in objectives.values():
        objective.prepare(class_index=class_index)
    timings: dict[str, list[float]] = {name: [] for name in [*RECIPES, "attack_step"]}
    for _ in range(repeats):  # interleave so drifting load hits every entry alike
        timings["attack_step"].append(median_seconds(attack_step, 3))
        for r, objective in objectives.items():
            timings[r].append(median_seconds(lambda o=objective: train_step(o), 1))
    t = {name: statistics.median(v) for name, v in timings.items()}
    k = objectives["madry"].adversary.attack.steps
    return {"seconds": t, "k": k, "limit_ratio": t["madry"] / (k * t["attack_step"] + t["standard"]),
            "repeats": repeats}


def cost_section(res: dict) -> str:
    t, k = res["seconds"], res["k"]
    lines = [
        "## Defense cost",
        "",
        f"`python benchmarks/defenses.py cost` ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}); one training step on a "
        f"batch of 128 Fashion-MNIST images, small_cnn (channels_last), median of {res['repeats']} "
        "interleaved repeats.",
        "",
        f"- madry (PGD-{k}) step / ({k} x attack step + 1 standard step) = "
        f"**{res['limit_ratio']:.3f}** (target <= 1.10); attack step (forward + input backward, "
        f"eval mode) {1000 * t['attack_step']:.1f} ms, standard step {1000 * t['standard']:.1f} ms.",
        f"- trades / madry cost = **{t['trades'] / t['madry']:.2f}** (TRADES takes 10 KL steps and "
        "two training forwards, madry 7 CE steps and one).",
        "",
        "| recipe | ms / step | x standard | x madry |",
        "|---|---|---|---|",
    ]
    for r in RECIPES:
        lines.append(f"| {r} | {1000 * t[r]:.1f} | {t[r] / t['standard']:.2f} | {t[r] / t['madry']:.2f} |")
    lines.append("")
    return "\n".join(wrap_prose(line) for line in lines)


# ---- robustness table ------------------------------------------------------------------------

def attack_first(run_dir: Path, attack_name: str, n: int, batch: int = 500, **params):
    """`attack_batches` of a run's model on its first n test images (an AttackResult)."""
    loaded = load_run(run_dir)
    cfg = loaded.cfg
    cfg.data.test_limit = None
    test = load_data(cfg).test
    batches = Batches(test.subset(torch.arange(n)), batch, shuffle=False)
    attack = ATTACKS.build(attack_name, **{"eps": EPS, **params})
    return attack_batches(loaded.model.eval(), batches, attack, device="cpu")


def robust_accuracy(run_dir: Path, attack_name: str, n: int, **params) -> float:
    return attack_first(run_dir, attack_name, n, **params).robust_accuracy


def evaluate_recipe(recipe: str, epochs: int, n_attack: int, n_aa: int) -> dict:
    run_dir = OUT / recipe
    done = run_dir / "bench.json"
    if done.is_file():
        saved = json.loads(done.read_text())
        if [saved.get(k) for k in ("epochs", "attack_images", "aa_images")] == [epochs, n_attack, n_aa]:
            return saved
    cfg = load_config(f"configs/{recipe}_fmnist.yaml",
                      [f"name={recipe}", f"out_dir={OUT}", f"train.epochs={epochs}"])
    run = train(cfg, resume=True, force=False)
    times = [r["time_s"] for r in run.history]
    result = {
        "recipe": recipe, "epochs": epochs, "attack_images": n_attack, "aa_images": n_aa,
        "train_minutes": sum(times) / 60,
        "clean": evaluate_clean(run_dir)["clean_accuracy"],
        "pgd20": robust_accuracy(run_dir, "pgd", n_attack, steps=20),
    }
    start = time.perf_counter()
    result["autoattack"] = robust_accuracy(run_dir, "autoattack", n_aa)
    result["autoattack_minutes"] = (time.perf_counter() - start) / 60
    done.write_text(json.dumps(result, indent=1))
    return result


def table_section(results: list[dict], epochs: int) -> str:
    n = results[0]["attack_images"] if results else 0
    n_aa = results[0]["aa_images"] if results else 0
    lines = [
        "## Defenses on Fashion-MNIST",
        "",
        f"`python benchmarks/defenses.py table --epochs {epochs} --attack-images {n} --aa-images {n_aa}`: "
        "small_cnn trained with each "
        f"recipe's config (`configs/<recipe>_fmnist.yaml`) for **{epochs} epochs** each (the same "
        "for all; the configs' default is 15), eps 0.1 in training and attack. Clean accuracy on "
        f"the 10,000 test images; PGD-20 (random start, step 2.5 eps / 20) on the first {n}, "
        f"AutoAttack (standard version: APGD-CE, APGD-T, FAB-T, Square) on the first {n_aa} "
        "(it takes minutes per robust model here). Train minutes are wall time on this shared "
        "2-core machine, with other jobs alongside at times (madry's second epoch, sml) and trades "
        "resumed mid-epoch after an interruption (its first part untimed); `defenses.py cost` has "
        "the clean per-step costs.",
        "",
        "| recipe | clean | PGD-20 | AutoAttack | train min | AA min |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['recipe']} | {100 * r['clean']:.2f}% | {100 * r['pgd20']:.1f}% | "
                     f"{100 * r['autoattack']:.1f}% | {r['train_minutes']:.1f} | "
                     f"{r['autoattack_minutes']:.1f} |")
    lines.append("")
    return "\n".join(wrap_prose(line) for line in lines)


# ---- AGKD-BML ablation (Table 2 layout) -------------------------------------------------------

EXTRA_ATTACKS = {"fgsm": ("fgsm", {}), "cw20": ("cw_inf", {"steps": 20})}


def with_attacks(recipe: str, epochs: int, n_attack: int, n_aa: int, attacks: dict) -> dict:
    """`evaluate_recipe` (cached) plus more attacks {key: (name, params)} on the first n_attack
    test images, each cached in the run's bench.json once computed."""
    result = evaluate_recipe(recipe, epochs, n_attack, n_aa)
    for key, (name, params) in attacks.items():
        if key not in result:
            result[key] = robust_accuracy(OUT / recipe, name, n_attack, **params)
            atomic_write_text(OUT / recipe / "bench.json", json.dumps(result, indent=1))
    return result


def ablation_recipe(recipe: str, epochs: int, n_attack: int, n_aa: int) -> dict:
    return with_attacks(recipe, epochs, n_attack, n_aa, EXTRA_ATTACKS)


def ablation_section(results: list[dict], epochs: int, costs: dict | None) -> str:
    n = results[0]["attack_images"] if results else 0
    n_aa = results[0]["aa_images"] if results else 0
    lines = [
        "## AGKD-BML ablation on Fashion-MNIST",
        "",
        f"`python benchmarks/defenses.py ablation --epochs {epochs} --attack-images {n} --aa-images "
        f"{n_aa}`: the layout of AGKD-BML's Table 2 (plus clean accuracy and AutoAttack). small_cnn, "
        f"each recipe's `configs/<recipe>_fmnist.yaml` trained for **{epochs} epochs**, eps 0.1 in "
        "training and attack; the AGKD recipes distill from a standard model trained for the same "
        "epochs (the cached teacher stage). Clean accuracy on the 10,000 test images; FGSM, "
        f"PGD-20 and CW-20 (PGD on the CW margin, random start) on the first {n}; AutoAttack "
        f"(standard version) on the first {n_aa}. Step cost x madry: one training step on a batch "
        "of 128, from `defenses.py cost` (a clean measurement; the train minutes are wall time "
        "on a shared machine).",
        "",
        "| recipe | clean | FGSM | PGD-20 | CW-20 | AutoAttack | step cost x madry | train min |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rel = "-"
        if costs and r["recipe"] in costs["seconds"]:
            rel = f"{costs['seconds'][r['recipe']] / costs['seconds']['madry']:.2f}"
        lines.append(f"| {r['recipe']} | {100 * r['clean']:.2f}% | {100 * r['fgsm']:.1f}% | "
                     f"{100 * r['pgd20']:.1f}% | {100 * r['cw20']:.1f}% | {100 * r['autoattack']:.1f}% | "
                     f"{rel} | {r['train_minutes']:.1f} |")
    lines.append("")
    return "\n".join(wrap_prose(line) for line in lines)


# ---- ATAT and AAD (their tables' layouts) and A3 -------------------------------------------------

A3_EPS = EPS / 2  # AAD Sec. 5.6 uses 4/255, half of its 8/255 budget; 3 iterations, sigma 10
ATTENTION_ATTACKS = {
    "fgsm": ("fgsm", {}),
    "ifgsm20": ("iter_fgsm", {"steps": 20, "step_size": EPS / 4}),
    "pgd7": ("pgd", {"steps": 7}),
    # AAD Table 6 also has 100-step columns; they are left out to keep the run within a session
    # (madry: PGD-100 78.1% vs PGD-40 78.3%, so they would add little here).
    **{f"pgd{k}": ("pgd", {"steps": k}) for k in (10, 40)},
    **{f"cw{k}": ("cw_inf", {"steps": k}) for k in (10, 20, 40)},
    # Iter-StepLL with steps of eps / 3 (Kurakin's 1/255 would stop at 3/255 = 0.012 < eps)
    "iter_ll3e": ("iter_ll", {"steps": 3, "eps": A3_EPS, "step_size": A3_EPS / 3}),
    "a3_iter_ll3e": ("a3_iter_ll", {"steps": 3, "eps": A3_EPS, "step_size": A3_EPS / 3}),
    "a3_iter_ll3e_s1": ("a3_iter_ll", {"steps": 3, "eps": A3_EPS, "step_size": A3_EPS / 3, "attention": 1.0}),
    "pgd3": ("pgd", {"steps": 3, "eps": A3_EPS}),
    "a3_pgd3": ("a3_pgd", {"steps": 3, "eps": A3_EPS}),
    "a3_pgd3_s1": ("a3_pgd", {"steps": 3, "eps": A3_EPS, "attention": 1.0}),
}


def _row(r: dict, keys: list[str], digits: int = 1) -> str:
    return " | ".join(f"{100 * r[k]:.{digits}f}%" for k in keys)


def attention_section(results: list[dict], epochs: int, costs: dict | None) -> str:
    n = results[0]["attack_images"] if results else 0
    n_aa = results[0]["aa_images"] if results else 0
    by = {r["recipe"]: r for r in results}

    def rel(recipe: str) -> str:
        if costs and recipe in costs["seconds"]:
            return f"{costs['seconds'][recipe] / costs['seconds']['madry']:.2f}"
        return "-"

    lines = [
        "## ATAT, AAD and A3 on Fashion-MNIST",
        "",
        f"`python benchmarks/defenses.py attention --epochs {epochs} --attack-images {n} --aa-images "
        f"{n_aa}`: small_cnn, each recipe's `configs/<recipe>_fmnist.yaml` for **{epochs} epochs**, "
        f"eps 0.1 in training and attack, white-box, untargeted; attacks on the first {n} test "
        f"images, AutoAttack (standard) on the first {n_aa}, clean accuracy on all 10,000. atat's "
        "teacher is the cached standard stage of the same epochs. Step cost x madry: one training "
        "step on a batch of 128 (`defenses.py cost`).",
        "",
        "ATAT Table 1 layout (I-FGSM-20: step eps / 4 as PGD-7's 2/255 at 8/255; PGD: random start, "
        "step 2.5 eps / steps):",
        "",
        "| recipe | clean | FGSM | I-FGSM-20 | PGD-7 | PGD-20 | AutoAttack | step cost x madry |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for recipe in ("standard", "madry", "alp", "atat"):
        if recipe in by:
            r = by[recipe]
            lines.append(f"| {recipe} | {100 * r['clean']:.2f}% | "
                         f"{_row(r, ['fgsm', 'ifgsm20', 'pgd7', 'pgd20', 'autoattack'])} | {rel(recipe)} |")
    lines += ["", "AAD Table 6 layout (CW-k: PGD on the CW margin; the 100-step columns are left out "
              "for time):", "",
              "| recipe | clean | FGSM | PGD-10 | PGD-20 | PGD-40 | CW-10 | CW-20 | CW-40 | AutoAttack "
              "| step cost x madry |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = ["fgsm", "pgd10", "pgd20", "pgd40", "cw10", "cw20", "cw40", "autoattack"]
    for recipe in ("standard", "madry", "aad_madry", "alp", "aad_alp"):
        if recipe in by:
            lines.append(f"| {recipe} | {100 * by[recipe]['clean']:.2f}% | {_row(by[recipe], keys)} | "
                         f"{rel(recipe)} |")
    lines += ["", f"AAD Table 7 layout: accuracy under 3 iterations at eps {A3_EPS:g} (AAD: 3 iterations "
              "at half its training budget; Iter-StepLL steps of eps / 3), each attack alone and with "
              "A3 at AAD's sigma 10 and at sigma 1 (lower is a stronger attack):", "",
              "| recipe | Iter-StepLL | + A3 sigma 10 | + A3 sigma 1 | PGD | + A3 sigma 10 | + A3 sigma 1 |",
              "|---|---|---|---|---|---|---|"]
    keys = ["iter_ll3e", "a3_iter_ll3e", "a3_iter_ll3e_s1", "pgd3", "a3_pgd3", "a3_pgd3_s1"]
    for r in results:
        lines.append(f"| {r['recipe']} | " + " | ".join(
            f"{100 * r[k]:.1f}%" if k in r else "-" for k in keys) + " |")
    lines.append("")
    return "\n".join(wrap_prose(line) for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["cost", "table", "ablation", "attention"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--attack-images", type=int, default=1000)
    parser.add_argument("--aa-images", type=int, default=1000)
    parser.add_argument("--recipes", nargs="+", default=RECIPES, choices=RECIPES)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.what == "cost":
        res = cost(args.repeats)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "cost.json").write_text(json.dumps(res, indent=1))  # ablation reads the ratios
        text = cost_section(res)
        print(text)
        if not args.no_write:
            write_section(text)
        return
    costs_file = OUT / "cost.json"
    costs = json.loads(costs_file.read_text()) if costs_file.is_file() else None
    if args.what == "attention":
        results = []
        for recipe in ATTENTION:
            results.append(with_attacks(recipe, args.epochs, args.attack_images, args.aa_images,
                                        ATTENTION_ATTACKS))
            print(json.dumps(results[-1]), flush=True)
            if not args.no_write:
                write_section(attention_section(results, args.epochs, costs))
        print(attention_section(results, args.epochs, costs))
        return
    if args.what == "ablation":
        results = []
        for recipe in ABLATION:
            results.append(ablation_recipe(recipe, args.epochs, args.attack_images, args.aa_images))
            print(json.dumps(results[-1]), flush=True)
            if not args.no_write:
                write_section(ablation_section(results, args.epochs, costs))
        print(ablation_section(results, args.epochs, costs))
        return
    results = []
    for recipe in args.recipes:
        results.append(evaluate_recipe(recipe, args.epochs, args.attack_images, args.aa_images))
        print(json.dumps(results[-1]), flush=True)
        if not args.no_write:  # after each recipe, so a long run shows progress
            write_section(table_section(results, args.epochs))
    print(table_section(results, args.epochs))


if __name__ == "__main__":
    main()
