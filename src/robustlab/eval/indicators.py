"""Indicators of attack failure, image by image (Pintor et al., "Indicators of Attack Failure:
Debugging and Improving Optimization of Adversarial Examples", NeurIPS 2022, Sec. 3.2; the
definitions follow their released code, pralab/IndicatorsOfAttackFailure).

An indicator explains why an attack failed on a point, so it is counted on the points the attack
left robust (clean-correct and still correct):

1. silent success: an iterate on the attack's path was adversarial, the returned point is not
   (the PGD family's `seen`; gone under the default best iterate);
2. incomplete optimisation: the loss trace, rescaled to [0, 1] and replaced by its running best,
   still moved by more than 0.05 over the last min(10, T) steps (`attacks.trace.late_progress`);
3. transfer failure: a transfer attack's example fooled its source, not the model;
4. unavailable gradients: the loss's input gradient at the point is zero or not finite (or the
   backward fails);
5. unstable predictions: the mean relative change of the loss under 100 uniform perturbations of
   the box +-eps/2 (the paper's 4/255 at its 8/255) exceeds `UNSTABLE`;
6. unconstrained attack failure: PGD with the whole [0, 1] box as its budget still fails.

1-3 come from the attacks' own records (`attacks.trace`), at no extra pass; 4-6 from one probe
(`probe`) of the points the report counts robust (correct under every worst-case attack): a point
only a weak attack left robust may lie within eps/2 of the boundary, where random noise moves its
small margin a lot without any randomness in the model. 4 and 5 read the margin loss z_y - max_j z_j
(the attack objective of Pintor et al.'s code), not the cross-entropy: near a confident point
the CE goes to 0, and any relative change of it is large.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.attacks import ATTACKS
from robustlab.attacks.trace import MOVES
from robustlab.models.modes import frozen_eval

PER_ATTACK = ("silent_success", "incomplete_optimization", "transfer_failure")
PROBED = ("unavailable_gradients", "unstable_predictions", "unconstrained_failure")
NAMES = PER_ATTACK + PROBED
# The mean relative margin change that flags a point (Pintor et al.'s code reports the value, with
# no threshold). Measured on Fashion-MNIST small_cnn (10,000 images x 2 epochs, the first 500 test
# images, benchmarks/indicators.py's models): over the points PGD-20 left robust at eps the largest
# value was 0.040 (madry) and 0.048 (standard); at eps/4, nearer the boundary where the margin is
# small, 0.12 and 0.22. The randomised test model (noise of sd 3 on its logits) gives 0.69-1.0.
UNSTABLE = 0.3
DRAWS = 100  # random perturbations per point (Pintor et al.'s gamma)
MITIGATION = {
    "silent_success": "keep the best iterate (the default; iterate=last turned it off)",
    "incomplete_optimization": "run more steps (e.g. steps=100) or AutoAttack's APGD, which adapts its step",
    "transfer_failure": "attack the model itself (white-box), or use a source closer to it",
    "unavailable_gradients": "use a gradient-free attack (Square) or BPDA through the layer that "
                             "blocks the gradient",
    "unstable_predictions": "average the gradient over the randomness (EOT: AutoAttack's rand version)",
    "unconstrained_failure": "the attack is broken on this model: check its loss, or use an adaptive attack",
}


def traced(calls: list[dict[str, Tensor]], n: int) -> dict[str, Tensor]:
    """The per-batch records of one attack run over n images (`attacks.trace.tracing`) as
    per-image tensors; empty for an attack that records nothing (AutoAttack, CW-L2, Square) or
    whose records are not one per image (an attack calling another several times)."""
    if not calls or any(set(call) != set(calls[0]) for call in calls):
        return {}
    joined = {key: torch.cat([call[key] for call in calls]) for key in calls[0]}
    return joined if all(len(v) == n for v in joined.values()) else {}


def attack_indicators(outcome: dict) -> dict[str, Tensor]:
    """Indicators 1-3 per image [N] bool, on the points the attack left robust; only those the
    attack recorded what they need for."""
    robust = outcome["clean"] & outcome["robust"]
    found = {}
    if "seen" in outcome:
        found["silent_success"] = robust & outcome["seen"]
    if "progress" in outcome:
        found["incomplete_optimization"] = robust & (outcome["progress"] > MOVES)  # NaN: one step
    if "source_fooled" in outcome:
        found["transfer_failure"] = robust & outcome["source_fooled"]
    return found


def margin(logits: Tensor, y: Tensor) -> Tensor:
    """[B] z_y - max_{j != y} z_j."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    return true - logits.scatter(1, y[:, None], -torch.inf).amax(1)


def probe(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, batch_size: int = 500,
          seed: int = 0) -> dict[str, Tensor]:
    """Indicators 4-6 on images x [M] (the points counted robust): per image bool, and
    `unstable_value` (the mean relative margin change, clipped at 1 as Pintor et al.)."""
    parts = [_probe_batch(model, x[i:i + batch_size], y[i:i + batch_size], eps, seed)
             for i in range(0, len(y), batch_size)]
    if not parts:  # no robust point: nothing to probe
        none = torch.zeros(0, dtype=torch.bool)
        return {**dict.fromkeys(PROBED, none), "unstable_value": torch.zeros(0)}
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


def _probe_batch(model: nn.Module, x: Tensor, y: Tensor, eps: float, seed: int) -> dict[str, Tensor]:
    with frozen_eval(model), torch.enable_grad():
        unavailable = _unavailable_gradients(model, x, y)
        value = _unstable_value(model, x, y, eps, seed)
    whole_box = ATTACKS.build("pgd", eps=1.0, steps=20, seed=seed)
    with torch.no_grad():
        unbounded = model(whole_box(model, x, y)).argmax(1) == y
    return {"unavailable_gradients": unavailable.cpu(), "unstable_predictions": (value > UNSTABLE).cpu(),
            "unstable_value": value.cpu(), "unconstrained_failure": unbounded.cpu()}


def _unavailable_gradients(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """[B] bool: the margin's input gradient is all zero or not finite; all True when the
    backward itself fails (Pintor et al.'s interrupted graph)."""
    x = x.detach().clone().requires_grad_(True)
    try:
        (grad,) = torch.autograd.grad(margin(model(x), y).sum(), x)
    except RuntimeError:
        return torch.ones(len(y), dtype=torch.bool, device=y.device)
    flat = grad.flatten(1)
    return ~torch.isfinite(flat).all(1) | (flat == 0).all(1)


def _unstable_value(model: nn.Module, x: Tensor, y: Tensor, eps: float, seed: int) -> Tensor:
    """[B] mean over `DRAWS` draws of |m(x + d) - m(x)| / |m(x)|, d ~ U(-eps/2, eps/2) per pixel
    (|m(x)| = 0 divides by 1), clipped at 1."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    with torch.no_grad():
        reference = margin(model(x), y)
        scale = torch.where(reference == 0, torch.ones_like(reference), reference.abs())
        total = torch.zeros_like(reference)
        for _ in range(DRAWS):
            noise = (torch.rand(x.shape, generator=g, device=x.device, dtype=x.dtype) - 0.5) * eps
            total += (margin(model((x + noise).clamp(0, 1)), y) - reference).abs() / scale
    return (total / DRAWS).clamp(max=1.0)


def summarise(outcomes: dict[str, dict], probed: dict[str, Tensor] | None, points: Tensor,
              seconds: float) -> dict:
    """The report's "indicators" section: per attack, the robust points, how many each indicator
    fires on and which (image indices), and how many robust points rest on a failed attack (any
    of its indicators, or a probed one); the probe's counts; and the verdict lines."""
    probe_hits = {name: torch.zeros_like(points) for name in PROBED}
    if probed is not None:
        for name in PROBED:
            probe_hits[name][points] = probed[name]
    rows = []
    for label, outcome in outcomes.items():
        robust = outcome["clean"] & outcome["robust"]
        found = {**attack_indicators(outcome), **{name: robust & hit for name, hit in probe_hits.items()}}
        failed = torch.stack(list(found.values())).any(0) if found else torch.zeros_like(robust)
        rows.append({"label": label, "robust_points": int(robust.sum()), "failed": int(failed.sum()),
                     "counts": {name: int(hit.sum()) for name, hit in found.items()},
                     "images": {name: hit.nonzero().flatten().tolist() for name, hit in found.items()
                                if hit.any()}})
    section = {"attacks": rows, "probe": None, "seconds": seconds,
               "thresholds": {"moves": MOVES, "unstable": UNSTABLE, "draws": DRAWS}}
    if probed is not None:
        values = probed["unstable_value"]
        section["probe"] = {"points": int(points.sum()), "counts": {n: int(probed[n].sum()) for n in PROBED},
                            "unstable_mean": values.mean().item() if len(values) else None}
    section["verdict"] = verdict(section)
    return section


def verdict(section: dict) -> list[str]:
    """One plain line per indicator that fired: where, how often, and the mitigation."""
    lines = []
    for name in NAMES:
        hits = [(row["label"], row["counts"][name], row["robust_points"]) for row in section["attacks"]
                if row["counts"].get(name)]
        if hits:
            where = ", ".join(f"{label} {count} of {points}" for label, count, points in hits)
            lines.append(f"{name.replace('_', ' ')} on robust points ({where}): {MITIGATION[name]}.")
    if not lines:
        lines.append("No indicator of attack failure fired: the points counted robust are not explained "
                     "by a failing attack (the attacks remain upper bounds on robustness).")
    return lines

