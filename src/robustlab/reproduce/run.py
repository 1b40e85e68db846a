"""`robustlab reproduce`: every recipe trained with one model, data set and budget, each evaluated
with the `papers` suite (AutoAttack and the gradient-masking checks included), PDM's detection
on its family, and the results pages.

Every piece is cached in the output directory: a finished run is not retrained, an interrupted
one resumes from its last checkpoint, a suite resumes from its finished attacks, and
`reproduce.json` records what is done, at which checkpoint step and how long it took, so a
second call only rewrites the pages.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from robustlab.config import Config, load_config
from robustlab.errors import UserError
from robustlab.eval.suite import Suite, load_suite
from robustlab.io import atomic_write_text
from robustlab.reproduce.claims import columns_of, compared_recipes
from robustlab.reproduce.plan import BUDGETS, DETECTED, RECIPES, Budget, detect_flags, seed_name

STATUS = "reproduce.json"


def recipe_config(recipe: str, budget: Budget, dataset: str, out_dir: Path,
                  configs: Path = Path("configs")) -> Config:
    """configs/<recipe>_fmnist.yaml under the budget, on `dataset` at its default eps."""
    from robustlab.data import DEFAULT_EPS

    path = configs / f"{recipe}_fmnist.yaml"
    if not path.is_file():
        raise UserError(f"{path} does not exist: run reproduce from the robustlab checkout (it reads "
                        "configs/<recipe>_fmnist.yaml) or give --configs DIR")
    overrides = [f"name={recipe}", f"out_dir={out_dir}", *budget.overrides()]
    if dataset != "fashion-mnist":
        overrides.append(f"data.name={dataset}")
    cfg = load_config(path, overrides)
    if dataset != "fashion-mnist" and cfg.defense.eps is not None:
        cfg.defense.eps = DEFAULT_EPS.get(dataset, cfg.defense.eps)
    return cfg


def seeded_configs(recipe: str, budget: Budget, dataset: str, out_dir: Path, configs: Path,
                   seeds: int) -> list[Config]:
    """The recipe's config once per seed: the config's seed + k, in run <seed_name>."""
    cfgs = []
    for k in range(seeds):
        cfg = recipe_config(recipe, budget, dataset, out_dir, configs)
        cfg.name, cfg.seed = seed_name(recipe, k), cfg.seed + k
        cfgs.append(cfg)
    return cfgs


def select_recipes(only: str | None, budget: Budget | None = None) -> list[str]:
    """The recipes to run: every one (a claims-only budget: those the claims compare), or --only's."""
    recipes = [r for r in RECIPES if budget is None or not budget.claims_only or r in compared_recipes()]
    if not only:
        return recipes
    chosen = [r.strip() for r in only.split(",") if r.strip()]
    unknown = [r for r in chosen if r not in recipes]
    if unknown or not chosen:
        raise UserError(f"--only: unknown recipe(s) {', '.join(unknown) or '(none given)'}"
                        f"{' for this budget' if len(recipes) < len(RECIPES) else ''}; choose from "
                        f"{', '.join(recipes)}")
    return [r for r in recipes if r in chosen]


class Status:
    """reproduce.json: per recipe and phase, what was done, at which step, and its seconds."""

    def __init__(self, path: Path, header: dict):
        self.path = path
        try:
            self.data = json.loads(path.read_text()) if path.is_file() else {}
        except json.JSONDecodeError as error:
            raise UserError(f"{path} is not valid JSON ({error}); delete it and run again: the runs are "
                            "kept, and their evaluations are redone or resumed") from None
        self.data.update(header)
        self.data.setdefault("recipes", {})

    def get(self, recipe: str, phase: str) -> dict | None:
        return self.data["recipes"].get(recipe, {}).get(phase)

    def put(self, recipe: str, phase: str, record: dict) -> None:
        self.data["recipes"].setdefault(recipe, {})[phase] = record
        self.save()

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=1) + "\n")


@dataclass(frozen=True)
class Checkpoint:
    """What a run's last.pt holds: how far it trained, with which config, and which file it is
    (step and weights digest), so an evaluation is redone for a retrained model and two
    reproductions that trained the same weights record the same identity."""

    epoch: int
    step: int
    config: dict
    identity: str


def last_checkpoint(cfg: Config) -> Checkpoint | None:
    from robustlab.experiment import RunDir
    from robustlab.train import load_checkpoint
    from robustlab.train.checkpoint import weights_digest

    path = RunDir(cfg.run_dir).checkpoint("last")
    if not path.is_file():
        return None
    state = load_checkpoint(path)
    step = state.get("global_step", 0)
    return Checkpoint(state["epoch"], step, state["config"], f"{step}:{weights_digest(state)}")


# Keys a run may change between calls without being another run.
MACHINE_KEYS = {"name", "out_dir", "data.data_dir", "train.device", "train.threads"}


def _check_same_settings(cfg: Config, checkpoint: Checkpoint) -> None:
    from robustlab.config import config_from_dict
    from robustlab.experiment.rundir import config_differences

    saved = config_from_dict(checkpoint.config).to_dict()
    diffs = config_differences(saved, cfg.to_dict(), allowed=MACHINE_KEYS | {"train.epochs"})
    if diffs or checkpoint.epoch > cfg.train.epochs:
        what = ", ".join(diffs) or f"train.epochs ({checkpoint.epoch} trained, {cfg.train.epochs} asked)"
        raise UserError(f"{cfg.run_dir} was trained with other settings ({what}) than this budget "
                        f"asks; delete that directory to retrain it, or give --out another directory")


def train_phase(cfg: Config, status: Status, log: Callable[[str], None]) -> str:
    """Train (or resume) one recipe: "ran", "skipped" (finished before) or "diverged" (now or
    before: a non-finite loss)."""
    from robustlab.experiment import train
    from robustlab.train import Diverged, Interrupted

    recipe = cfg.name
    done = status.get(recipe, "train") or {}
    if done.get("status") == "diverged":
        if cfg.run_dir.exists():
            log(f"{recipe}: diverged before ({done['message']}); delete {cfg.run_dir} to try again")
            return "diverged"
        done = {}
    checkpoint = last_checkpoint(cfg)
    if checkpoint is not None:
        _check_same_settings(cfg, checkpoint)
        if checkpoint.epoch == cfg.train.epochs and done.get("status") == "done":
            return "skipped"
    log(f"== {recipe}: training ({cfg.train.epochs} epochs)")
    start = time.perf_counter()
    # An interrupted run adds to its earlier time; a run directory made anew starts from zero.
    seconds = done.get("seconds", 0.0) if checkpoint is not None else 0.0

    def record(state: str, **extra) -> None:
        status.put(recipe, "train", {"status": state, "seconds": seconds + time.perf_counter() - start,
                                     **extra})

    try:
        train(cfg, resume=True, log=log)
    except Interrupted:  # its state is saved: keep the time spent so far, then stop
        record("interrupted")
        raise
    except Diverged as error:
        record("diverged", message=str(error))
        log(f"{recipe}: training diverged: {error}")
        return "diverged"
    checkpoint = last_checkpoint(cfg)
    record("done", epochs=checkpoint.epoch, step=checkpoint.step)
    return "ran"


def _fresh(done: dict | None, checkpoint: Checkpoint, **settings) -> bool:
    """A phase's record is still valid: same checkpoint file, same settings, output still there."""
    return (done is not None and done.get("checkpoint") == checkpoint.identity
            and all(done.get(k) == v for k, v in settings.items()) and Path(done["report"]).is_file())


def evaluations(recipe: str, budget: Budget) -> list[tuple[str, Suite, int, str | None]]:
    """(phase, suite, images, report directory in the run or None for its report/) of each
    evaluation the budget runs on `recipe`: the whole papers suite, then each claim evaluation's
    columns that the recipe's claims read."""
    papers = load_suite("papers")
    runs = [("eval", papers, budget.suite_images, None)] if budget.suite_images else []
    needed = columns_of(recipe, budget.extensions)
    for e in budget.claim_evaluations:
        columns = [c for c in e.columns if c in needed]
        if columns:
            params = {label: p for label, p in e.params.items() if label in columns}
            runs.append((f"eval {e.phase}", papers.only(columns).with_params(params), e.images,
                         f"claims_{e.phase}"))
    return runs


def eval_phase(cfg: Config, phase: str, suite: Suite, images: int, report_dir: str | None,
               status: Status, log: Callable[[str], None]) -> bool:
    """`suite` on the first `images` test images (the papers suite's phase "eval" first measures
    clean accuracy on the whole test split); False when its record is still valid."""
    from robustlab.experiment import evaluate_suite

    checkpoint, fingerprint = last_checkpoint(cfg), suite.fingerprint()
    if _fresh(status.get(cfg.name, phase), checkpoint, images=images, suite=fingerprint):
        return False
    log(f"== {cfg.name}: {suite.name} suite on {images} test images")
    start = time.perf_counter()
    clean = _clean(cfg) if phase == "eval" else {}
    out = None if report_dir is None else str(Path(cfg.run_dir) / report_dir)
    report = evaluate_suite(cfg.run_dir, suite, limit=images, out=out, log=log)
    status.put(cfg.name, phase, {"checkpoint": checkpoint.identity, "step": checkpoint.step,
                                 "images": images, "suite": fingerprint, **clean,
                                 "report": report["files"]["json"], "seconds": time.perf_counter() - start})
    return True


def clean_phase(cfg: Config, status: Status, log: Callable[[str], None]) -> bool:
    """Clean accuracy on the whole test split alone (a budget without the papers suite); False
    when its record is still valid."""
    checkpoint, done = last_checkpoint(cfg), status.get(cfg.name, "clean")
    if done is not None and done.get("checkpoint") == checkpoint.identity:
        return False
    log(f"== {cfg.name}: clean accuracy")
    start = time.perf_counter()
    status.put(cfg.name, "clean", {"checkpoint": checkpoint.identity, "step": checkpoint.step, **_clean(cfg),
                                   "seconds": time.perf_counter() - start})
    return True


def _clean(cfg: Config) -> dict:
    from robustlab.experiment import evaluate_clean

    clean = evaluate_clean(cfg.run_dir)
    return {"clean_accuracy": clean["clean_accuracy"], "clean_images": clean["test_images"]}


def detect_phase(cfg: Config, budget: Budget, status: Status, log: Callable[[str], None]) -> bool:
    """PDM Tables 1-4 for one run of its family (`detection.detect`); False when its record is
    still valid."""
    from robustlab.experiment.detect import detect

    checkpoint = last_checkpoint(cfg)
    if _fresh(status.get(cfg.name, "detect"), checkpoint, settings=budget.detect):
        return False
    log(f"== {cfg.name}: KDE detection ({detect_flags(budget.detect)})")
    start = time.perf_counter()
    result = detect(cfg.run_dir, log=log, **budget.detect)
    status.put(cfg.name, "detect", {"checkpoint": checkpoint.identity, "step": checkpoint.step,
                                    "settings": budget.detect, "report": result["files"]["json"],
                                    "seconds": time.perf_counter() - start})
    return True


def reproduce(budget: str | Budget, *, only: str | None = None, dataset: str = "fashion-mnist",
              out: str | None = None, results: str | None = "docs/results.md", configs: str = "configs",
              seeds: int = 1, log: Callable[[str], None] = print) -> dict:
    """Train, evaluate and detect as the budget says, each recipe with `seeds` seeds (the
    config's seed, + 1, ...), then write the results pages.

    Returns reproduce.json's content. Work already recorded there (or found finished on disk) is
    skipped, so the call can be repeated after an interruption, to add seeds, or to rewrite the
    pages."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise UserError(f"--seeds={seeds!r} is out of range: expected an integer >= 1")
    if isinstance(budget, str):
        if budget not in BUDGETS:
            raise UserError(f"--budget={budget!r} is not a budget: choose {' or '.join(BUDGETS)}")
        budget = BUDGETS[budget]
    from robustlab.data.datasets import DATASETS

    if dataset not in DATASETS.names():
        raise UserError(f"--dataset={dataset!r} is not a data set: choose from {', '.join(DATASETS.names())}")
    out_dir = Path(out) if out else Path("runs") / "reproduce" / f"{budget.name}_{dataset}"
    recipes = select_recipes(only, budget)
    cfgs = {cfg.name: (recipe, cfg) for recipe in recipes
            for cfg in seeded_configs(recipe, budget, dataset, out_dir, Path(configs), seeds)}
    out_dir.mkdir(parents=True, exist_ok=True)
    status = Status(out_dir / STATUS, {"budget": budget.name, "about": budget.about, "dataset": dataset,
                                       "suite": "papers", "suite_images": budget.suite_images,
                                       "claim_evaluations": [asdict(e) for e in budget.claim_evaluations],
                                       "extensions": budget.extensions, "detect": budget.detect})
    status.data["seeds"] = max(seeds, status.data.get("seeds", 1))  # a later call may add seeds
    start, started = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M:%S")
    outcomes = {name: train_phase(cfg, status, log) for name, (_, cfg) in cfgs.items()}
    trained = [name for name in cfgs if outcomes[name] != "diverged"]
    ran = sum(o == "ran" for o in outcomes.values())
    if not budget.suite_images:
        ran += sum(clean_phase(cfgs[name][1], status, log) for name in trained)
    ran += sum(eval_phase(cfgs[name][1], *evaluation, status, log) for name in trained
               for evaluation in evaluations(cfgs[name][0], budget))
    ran += sum(detect_phase(cfgs[name][1], budget, status, log) for name in trained
               if cfgs[name][0] in DETECTED)
    seconds = time.perf_counter() - start
    status.data["last_call_seconds"] = seconds
    status.data.setdefault("calls", []).append({"seconds": seconds, "phases": ran, "only": only,
                                                "started": started})
    status.save()
    if results:
        from robustlab.reproduce.pages import write_pages

        for path in write_pages(status.data, out_dir, Path(results)):
            log(f"wrote {path}")
    return status.data

