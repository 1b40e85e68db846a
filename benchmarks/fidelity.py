"""The Fidelity issue's measurement: each defense before and after its paper-fidelity fixes.

Trains each recipe from `configs/<recipe>_fmnist.yaml` under the small reproduce budget
(10,000 training images x 2 epochs, the same for every recipe), then measures clean accuracy on
the 10,000 test images, PGD-20 (random start, step 2.5 eps / 20) on the first 1,000, AutoAttack
(the reference code, standard version) on the first 200 and, for the PDM recipes, the gray-box
detection AUCs (`robustlab detect --threats gray`, 100 images, 500 embeddings per class).

Run it once per code version, each into its own folder, then write the side-by-side table:

    git worktree add /tmp/old <commit before the fixes>
    PYTHONPATH=/tmp/old/src python benchmarks/fidelity.py run --label old --out runs/fidelity/old
    python benchmarks/fidelity.py run --label new --out runs/fidelity/new
    python benchmarks/fidelity.py table runs/fidelity/old runs/fidelity/new

Each recipe's numbers land in OUT/<recipe>/fidelity.json as soon as they are measured, so an
interrupted call continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from defenses import attack_first  # benchmarks/defenses.py (this folder is on sys.path)

import robustlab
from robustlab.config import load_config
from robustlab.experiment import evaluate_clean, train
from robustlab.experiment.detect import detect

RECIPES = ("madry", "alp", "atat", "aad_madry", "aad_alp", "agkd_bml", "rce", "siamese_rvl", "pdm",
           "bidirection", "cascade")
DETECTED = ("rce", "siamese_rvl", "pdm")
SETTINGS = {"train_images": 10_000, "epochs": 2, "pgd_images": 1000, "aa_images": 200,
            "detect_images": 100, "per_class": 500}


def robust_accuracy(run_dir: Path, attack_name: str, n: int, **params) -> tuple[float, list[int]]:
    """Robust accuracy on the first n test images and the indices of the images that stayed correct."""
    result = attack_first(run_dir, attack_name, n, batch=200, **params)
    kept = (result.per_sample["clean"] & result.per_sample["robust"]).nonzero().flatten().tolist()
    return result.robust_accuracy, kept


def measure(recipe: str, out: Path, label: str) -> dict:
    run_dir = out / recipe
    done = run_dir / "fidelity.json"
    result = json.loads(done.read_text()) if done.is_file() else {}
    if result.get("settings") != SETTINGS:
        result = {"recipe": recipe, "label": label, "settings": SETTINGS,
                  "code": str(Path(robustlab.__file__).parent)}

    def save() -> None:
        done.write_text(json.dumps(result, indent=1))

    if "clean" not in result:
        cfg = load_config(f"configs/{recipe}_fmnist.yaml",
                          [f"name={recipe}", f"out_dir={out}", f"train.epochs={SETTINGS['epochs']}",
                           f"data.train_limit={SETTINGS['train_images']}", "train.monitor_images=0"])
        start = time.perf_counter()
        train(cfg, resume=True, force=False)
        result["train_minutes"] = (time.perf_counter() - start) / 60
        result["clean"] = evaluate_clean(run_dir)["clean_accuracy"]
        save()
    if "pgd20" not in result:
        result["pgd20"], result["pgd20_robust"] = robust_accuracy(run_dir, "pgd", SETTINGS["pgd_images"],
                                                                   steps=20)
        save()
    if "autoattack" not in result:
        start = time.perf_counter()
        result["autoattack"], result["autoattack_robust"] = robust_accuracy(run_dir, "autoattack",
                                                                             SETTINGS["aa_images"])
        result["autoattack_minutes"] = (time.perf_counter() - start) / 60
        save()
    if recipe in DETECTED and "gray_auc" not in result:
        numbers = detect(run_dir, threats=("gray",), images=SETTINGS["detect_images"],
                         per_class=SETTINGS["per_class"], cw_hc_steps=50, out=str(run_dir / "detect"))
        result["gray_auc"] = {k: v.get("auc") for k, v in numbers["gray_box"].items()}
        save()
    return result


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for recipe in args.recipes:
        print(f"== {args.label}: {recipe}", flush=True)
        print(json.dumps(measure(recipe, out, args.label)), flush=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def paired(old: dict, new: dict, key: str, n: int) -> str:
    """new - old on the same n images: the difference in points, its 95% CI (Wald interval of a
    paired difference of proportions) and the exact McNemar p-value (scipy.stats.binomtest on the
    b + c discordant images)."""
    from scipy.stats import binomtest

    if f"{key}_robust" not in old or f"{key}_robust" not in new:
        return "-"
    a, b = set(old[f"{key}_robust"]), set(new[f"{key}_robust"])
    gained, lost = len(b - a), len(a - b)
    diff = (gained - lost) / n
    se = ((gained + lost) / n ** 2 - diff ** 2 / n) ** 0.5
    p = binomtest(gained, gained + lost).pvalue if gained + lost else 1.0
    return f"{100 * diff:+.1f} [{100 * (diff - 1.96 * se):+.1f}, {100 * (diff + 1.96 * se):+.1f}], p {p:.2g}"


def table(args: argparse.Namespace) -> None:
    old, new = Path(args.old), Path(args.new)
    lines = ["| recipe | clean old | clean new | PGD-20 old | PGD-20 new | new - old (95% CI, McNemar) | "
             "AA old | AA new | new - old (95% CI, McNemar) | mean gray AUC old | new |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for recipe in RECIPES:
        rows = []
        for folder in (old, new):
            f = folder / recipe / "fidelity.json"
            rows.append(json.loads(f.read_text()) if f.is_file() else {})
        if not any(rows):
            continue
        cells = [recipe, *[_pct(r.get("clean")) for r in rows]]
        for key, n in (("pgd20", SETTINGS["pgd_images"]), ("autoattack", SETTINGS["aa_images"])):
            cells += [*[_pct(r.get(key)) for r in rows], paired(*rows, key, n)]
        for r in rows:
            auc = [v for v in (r.get("gray_auc") or {}).values() if v is not None]
            cells.append(f"{sum(auc) / len(auc):.3f}" if auc else "-")
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run")
    r.add_argument("--label", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    t = sub.add_parser("table")
    t.add_argument("old")
    t.add_argument("new")
    args = parser.parse_args()
    (run if args.what == "run" else table)(args)


if __name__ == "__main__":
    main()
