"""Run a `Suite` on a model: every attack on every image, the per-sample worst case, the curves
and the gradient-masking checks, as one report dict (schema: docs/report.md).

Each finished attack is saved to a state file, so an interrupted evaluation resumes where it
stopped; under torchrun each process attacks its share of the images (rank r takes images
r, r + W, ...) and rank 0 gathers the per-sample results. An entry the model or the caller cannot
serve (A3 on a model without the `Classifier` contract, a transfer attack without a source) is
listed under "skipped" with its reason, and the rest of the suite runs.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from robustlab.attacks import ATTACKS, transfer
from robustlab.attacks.trace import tracing
from robustlab.eval import indicators, masking
from robustlab.eval.accuracy import accuracy
from robustlab.eval.attack_run import attack_batches
from robustlab.eval.outcomes import images_digest
from robustlab.eval.outcomes import outcomes as image_outcomes
from robustlab.eval.suite import Suite, SuiteAttack
from robustlab.io import atomic_torch_save, plain_torch_load
from robustlab.models.adapter import offers_contract

SCHEMA = "robustlab.report/3"  # 2: per-image outcomes; 3: indicators of attack failure


@dataclass
class Shard:
    """This process's share of the images (rank r of W takes r, r + W, ...)."""

    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def gather(self, local: dict[str, Tensor], n: int) -> dict[str, Tensor]:
        """Every rank's per-sample tensors put back in image order (on every rank)."""
        if not self.enabled:
            return local
        parts: list = [None] * self.world_size
        torch.distributed.all_gather_object(parts, {k: v.cpu() for k, v in local.items()})
        out = {}
        for key, value in local.items():
            full = torch.zeros(n, dtype=value.dtype)
            for rank, part in enumerate(parts):
                full[rank::self.world_size] = part[key]
            out[key] = full
        return out


class State:
    """Finished entries of one evaluation, saved after each (atomic), keyed by the suite's
    fingerprint and the image count so a resume never mixes two evaluations."""

    def __init__(self, path: Path | None, key: str, writer: bool):
        self.path, self.key, self.writer = path, key, writer
        self.entries: dict[str, dict] = {}
        if path is not None and path.is_file():
            saved = plain_torch_load(path, "evaluation state", "delete it to start the evaluation afresh")
            if saved.get("key") == key:
                self.entries = saved["entries"]

    def get(self, name: str) -> dict | None:
        return self.entries.get(name)

    def put(self, name: str, value: dict) -> None:
        self.entries[name] = value
        if self.path is not None and self.writer:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save({"key": self.key, "entries": self.entries}, self.path)


@dataclass
class _Batches:
    """Consecutive batches of in-memory images, with a length for the progress bar."""

    x: Tensor
    y: Tensor
    batch_size: int
    device: torch.device | str

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.y), self.batch_size):
            end = start + self.batch_size
            yield self.x[start:end].to(self.device), self.y[start:end].to(self.device)


def run_suite(model: nn.Module, x: Tensor, y: Tensor, suite: Suite, *, eps: float, num_classes: int,
              device: torch.device | str = "cpu", batch_size: int = 500,
              sources: Callable[[str], nn.Module] | None = None, state_path: Path | None = None,
              state_key: str = "", shard: Shard | None = None,
              log: Callable[[str], None] = print) -> dict:
    """The report's evaluation part for images x [N, C, H, W] in [0, 1] with labels y.
    `state_key` names the model (checkpoint, step, transfer source), so a saved state is reused
    only for the same model, suite, images and eps."""
    shard = shard or Shard()
    n = len(y)
    model = model.to(device).eval()
    # The images' digest too: the same model on other images (another data set, another order)
    # must not reuse an attack's outcomes.
    digest = images_digest(x, y)
    state = State(state_path, f"{suite.fingerprint()}:{n}:{eps}:{digest}:{state_key}", writer=shard.rank == 0)
    mine_x, mine_y = x[shard.rank::shard.world_size], y[shard.rank::shard.world_size]

    def evaluate(name: str, make_attack: Callable[[], object]) -> dict:
        """Per-sample outcome of the attack on all N images (resumed from the state if saved)."""
        done = state.get(name)
        if done is not None:
            return done
        attack = make_attack()
        start = time.perf_counter()
        with tracing() as calls:  # the attack's path, for the indicators of attack failure
            result = attack_batches(model, _Batches(mine_x, mine_y, batch_size, device), attack,
                                    device=device, progress=shard.rank == 0, desc=name)
        value = shard.gather({**result.per_sample, **indicators.traced(calls, len(mine_y))}, n)
        value["seconds"] = time.perf_counter() - start
        state.put(name, value)
        if shard.rank == 0:
            log(f"  {name}: accuracy {value['robust'].float().mean().item():.4f} "
                f"({value['seconds']:.1f} s)")
        return value

    columns, skipped = [], []
    clean = None

    def make(entry: SuiteAttack):
        attack = entry.build(eps)
        return attack if entry.source is None else transfer(sources(entry.source), attack)

    for entry in suite.attacks:
        reason = unavailable(entry, model, sources)
        if reason is not None:
            skipped.append({"label": entry.label, "attack": entry.attack, "kind": entry.kind,
                            "eps": entry.eps_factor * eps, "reason": reason})
            continue
        outcome = evaluate(entry.label, lambda entry=entry: make(entry))
        clean = outcome["clean"]
        columns.append(_column(entry, eps, outcome))

    curves = _curves(suite, eps, evaluate)
    examples = []
    if suite.examples and shard.rank == 0 and suite.examples["attack"] in {c["label"] for c in columns}:
        examples = _examples(model, x, y, suite, {e.label: e for e in suite.attacks}, make, device)
    outcomes = {c["label"]: state.get(c["label"]) for c in columns}
    worst = _worst_case(columns, outcomes, clean, n)
    per_image = image_outcomes(n, digest, clean, {label: o["robust"] for label, o in outcomes.items()},
                               worst["attacks"] if clean is not None else [])
    checks = _masking_checks(model, x, y, suite, columns, outcomes, curves, eps, num_classes,
                             evaluate, device)
    failure = (_indicators(model, x, y, outcomes, worst["attacks"], clean, eps, state, device,
                           batch_size, log) if clean is not None and shard.rank == 0 else None)
    return {
        "schema": SCHEMA,
        "suite": suite.name,
        "images": n,
        "eps": eps,
        "clean_accuracy": (clean.float().mean().item() if clean is not None
                           else accuracy(model, _Batches(x, y, batch_size, device), device)),
        "attacks": columns,
        "skipped": skipped,
        "worst_case": worst,
        "curves": curves,
        "examples": examples,
        "outcomes": per_image,
        "masking": {"checks": [c.to_dict() for c in checks], "verdict": masking.verdict(checks)},
        "indicators": failure,
    }


PROBE = "indicators probe"  # the state entry of the probe's per-image results


def _indicators(model: nn.Module, x: Tensor, y: Tensor, outcomes: dict[str, dict], worst: list[str],
                clean: Tensor, eps: float, state: State, device, batch_size: int,
                log: Callable[[str], None]) -> dict:
    """Pintor et al.'s indicators of attack failure (`eval.indicators`): the attacks' own records,
    and one probe (saved in the state, like an attack) of the points the report counts robust:
    correct under every `worst`-case attack (without such attacks, under any)."""
    start = time.perf_counter()
    robust = torch.stack([outcomes[label]["robust"] for label in worst or outcomes])
    points = clean & (robust.all(0) if worst else robust.any(0))
    probed = state.get(PROBE)
    if probed is None:
        where = points.nonzero().flatten()
        probed = indicators.probe(model, x[where].to(device), y[where].to(device), eps, batch_size=batch_size)
        probed["seconds"] = torch.tensor(time.perf_counter() - start)
        state.put(PROBE, probed)
        log(f"  indicators of attack failure: probe of the {len(where)} robust points "
            f"({probed['seconds'].item():.1f} s)")
    return indicators.summarise(outcomes, probed, points, probed["seconds"].item())


def _curves(suite: Suite, eps: float, evaluate: Callable) -> dict:
    """Accuracy vs PGD steps (step 0.25 eps) and vs eps (PGD-20), as the suite asks."""
    curves = {}
    steps = suite.curves.get("steps") or []
    if steps:
        curves["steps"] = {str(s): _accuracy(evaluate(f"curve steps={s}", lambda s=s: ATTACKS.build(
            "pgd", eps=eps, steps=int(s), step_size=0.25 * eps))) for s in steps}
    factors = suite.curves.get("eps_factors") or []
    if factors:
        def pgd20(f: float):
            return lambda: ATTACKS.build("pgd", eps=f * eps, steps=20)

        curves["eps"] = {f"{f * eps:.6g}": _accuracy(evaluate(_same_column(suite, f) or f"curve eps x{f:g}",
                                                              pgd20(f))) for f in factors}
    return curves


def _same_column(suite: Suite, factor: float) -> str | None:
    """The label of a suite entry that is the eps curve's PGD-20 at `factor` (its outcome is
    reused, not computed twice), or None."""
    return next((e.label for e in suite.attacks if e.attack == "pgd" and e.params == {"steps": 20}
                 and e.eps_factor == factor and e.step_factor is None and e.source is None), None)


def _examples(model: nn.Module, x: Tensor, y: Tensor, suite: Suite, entries: dict, make,
              device) -> list[dict]:
    """The first `count` images, clean and under the `attack` entry, with both predictions: the
    report's strip of examples (each image a base64 PNG, the data set's own resolution)."""
    count = min(suite.examples["count"], len(y))
    entry = entries[suite.examples["attack"]]
    clean, labels = x[:count].to(device), y[:count].to(device)
    adversarial = make(entry)(model, clean, labels)
    with torch.no_grad():  # one forward of both (the model is in eval mode: rows are independent)
        predicted = model(torch.cat([clean, adversarial])).argmax(1).tolist()
    clean_pred, adv_pred = predicted[:count], predicted[count:]
    return [{"index": i, "label": int(labels[i]), "clean_pred": clean_pred[i], "adv_pred": adv_pred[i],
             "attack": entry.label, "clean_png": png_base64(clean[i]), "adv_png": png_base64(adversarial[i])}
            for i in range(count)]


def png_base64(image: Tensor) -> str:
    """A [C, H, W] image in [0, 1] as a base64 PNG (grey for one channel, RGB for three)."""
    from PIL import Image

    pixels = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    array = pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def unavailable(entry: SuiteAttack, model: nn.Module,
                sources: Callable[[str], nn.Module] | None) -> str | None:
    """Why `entry` cannot run on `model` with these `sources` (None: it can)."""
    if entry.source is not None and sources is None:
        return ("a transfer attack needs a source model to craft its examples on: give one "
                "(source= / --source)")
    if entry.source is None and entry.needs_contract and not offers_contract(model):
        return (f"{entry.attack} reads the model's feature map (Grad-CAM), which needs the Classifier "
                "contract (features / embed / head): name a feature layer (feature_layer= / "
                "--feature-layer) to read it through a hook")
    return None


def _accuracy(outcome: dict) -> float:
    return outcome["robust"].float().mean().item()


def _column(entry: SuiteAttack, eps: float, outcome: dict) -> dict:
    clean, robust = outcome["clean"], outcome["robust"]
    broken = clean & ~robust
    return {
        "label": entry.label, "attack": entry.attack, "kind": entry.kind, "eps": entry.eps_factor * eps,
        "params": {**entry.params, **({"step_size": entry.step_factor * entry.eps_factor * eps}
                                      if entry.step_factor is not None else {})},
        "source": entry.source, "worst_case": entry.worst_case,
        "accuracy": _accuracy(outcome),
        "success_rate": broken.float().sum().item() / max(1, int(clean.sum())),
        "linf_mean": outcome["linf"].mean().item() if len(robust) else 0.0,
        "l2_mean": outcome["l2"].mean().item() if len(robust) else 0.0,
        "seconds": outcome["seconds"],
    }


def _worst_case(columns: list[dict], outcomes: dict, clean: Tensor | None, n: int) -> dict:
    """Robust = correct under every worst-case attack; each broken point is credited to the first
    attack (in suite order) that broke it."""
    if clean is None:
        return {"accuracy": None, "attacks": [], "broken_by": {}}
    robust = clean.clone()
    broken_by: dict[str, int] = {}
    used = [c["label"] for c in columns if c["worst_case"]]
    for label in used:
        newly = robust & ~outcomes[label]["robust"]
        if newly.any():
            broken_by[label] = int(newly.sum())
        robust &= outcomes[label]["robust"]
    return {"accuracy": robust.float().mean().item(), "attacks": used, "broken_by": broken_by,
            "clean_wrong": int((~clean).sum())}


def _first(columns: list[dict], test) -> dict | None:
    return next((c for c in columns if test(c)), None)


def _masking_checks(model, x, y, suite, columns, outcomes, curves, eps, num_classes, evaluate,
                    device) -> list[masking.Check]:
    at_eps = [c for c in columns if abs(c["eps"] - eps) < 1e-12]
    single = _first(at_eps, lambda c: c["kind"] == "single_step" and c["attack"] in ("fgsm", "step_fgsm"))
    pgd = _first(at_eps, lambda c: c["attack"] == "pgd" and c["kind"] == "iterative"
                 and c["params"].get("steps", 20) >= 20) or _first(at_eps, lambda c: c["kind"] == "iterative")
    checks = masking.probe(model, x[:256].to(device), y[:256].to(device))
    if single and pgd:
        checks.append(masking.iterative_vs_single_step(single["accuracy"], pgd["accuracy"],
                                                       names=(single["label"], pgd["label"])))
    large = suite.masking.get("large_eps")
    if large:
        outcome = evaluate(f"masking PGD-20 eps={large:g}",
                           lambda: ATTACKS.build("pgd", eps=float(large), steps=20))
        checks.append(masking.large_eps(_accuracy(outcome), float(large), num_classes))
    if "steps" in curves:
        checks.append(masking.more_steps({int(k): v for k, v in curves["steps"].items()}))
    white = [c for c in at_eps if c["kind"] in ("single_step", "iterative")]
    black = [c for c in at_eps if c["kind"] == "transfer"]
    if white and black:
        white_broken = ~torch.stack([outcomes[c["label"]]["robust"] for c in white]).all(0)
        black_broken = ~torch.stack([outcomes[c["label"]]["robust"] for c in black]).all(0)
        clean = outcomes[white[0]["label"]]["clean"]
        checks.append(masking.black_box_vs_white_box(white_broken & clean, black_broken & clean))
    free = [c for c in at_eps if c["kind"] == "gradient_free"]
    if free and pgd:
        strongest = min(free, key=lambda c: c["accuracy"])
        checks.append(masking.gradient_free_vs_gradient(strongest["accuracy"], pgd["accuracy"],
                                                        names=(strongest["label"], pgd["label"])))
    aa = _first(at_eps, lambda c: c["attack"] == "autoattack")
    if aa and pgd:
        checks.append(masking.autoattack_vs_pgd(aa["accuracy"], pgd["accuracy"], pgd_label=pgd["label"]))
    return checks


