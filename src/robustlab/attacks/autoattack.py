"""AutoAttack (Croce & Hein, ICML 2020) through the authors' reference code (PyPI `pyautoattack`,
imported as `pyautoattack`), behind robustlab's attack interface.

Registered names (all untargeted, L-inf and L2, fixed reference hyperparameters):

- `autoattack`: the standard version: APGD-CE (100 steps), APGD-T (DLR loss, 9 targets x 100
  steps), FAB-T (9 targets x 100 steps) and Square (5,000 queries). Each attack runs only on the
  points that are still robust, so its cost depends on the model: seconds on a standard-trained
  model (APGD-CE breaks nearly everything), far more on a robust one. `version` also takes
  "plus" and "rand" (randomized defenses, EOT), and "custom" with `attacks` (a subset of
  `REFERENCE_ATTACKS`, run with the standard version's settings).
- `apgd_ce`, `apgd_t`: the standard version's APGD-CE, resp. APGD-T, alone: cheaper, and the
  gradient-based part that breaks most points.

What the wrapper adds to the reference: the model runs under `frozen_eval` (caller's modes and
`requires_grad` restored, parameter `.grad` untouched); the global RNG (which the reference
reseeds) and the trace function (which its dynamic-defense check resets, e.g. coverage's) are
restored; the reference's checks (randomized or dynamic defense, zero gradients, outputs that look
like probabilities, Square stronger than the gradient attacks) become `UserWarning`s.

Points the model already misclassifies are not attacked by the reference (they are non-robust
as they are). With `push_misclassified` (default) they are moved by one reference APGD-CE run in
best-loss mode, and the result is kept only where the model still misclassifies it: robust
accuracy is exactly the reference's, and every returned example is a high-loss point of the
ball (stronger for transfer and saved sets) rather than the clean image. False gives the
reference output unchanged.

`impl="robustlab"` runs the same reference attacks, same settings and seeds, on a cheaper copy of
the model (`models.attack_copy`): BatchNorm folded into the convolutions and activations in the
channels-last layout (the same function up to float rounding). With `precision="bf16"`, APGD-CE's,
APGD-T's and Square's passes run under bfloat16 autocast, while FAB-T and every robust / broken
decision between the attacks stay in float32 (an attack that thinks a point broken when the
float32 model does not leaves it to the next attack). FAB-T returns points just across the
boundary, where bfloat16's rounding (up to 5e-2 on the logits) decides the side: with FAB-T all in
bfloat16 it missed 1 of 100 images the reference broke, and with only its linearisations (logit
differences and their gradients) in bfloat16 and its is-adversarial tests in float32 it still
missed 1 of 200 (madry's small_cnn, the benchmark's images), so it gets no bfloat16 pass at all.
The returned examples are judged by the caller's model as it is. Agreement with the reference and
the speed-up are measured by `benchmarks/autoattack.py` (benchmarks/results.md) and checked by a
slow test.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks.base import check_inputs
from robustlab.attacks.build import register_bounded
from robustlab.attacks.threat import Threat
from robustlab.errors import UserError, check_ranges
from robustlab.models.attack_copy import attack_copy, in_bfloat16
from robustlab.models.modes import frozen_eval

REFERENCE_ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
VERSIONS = ("standard", "plus", "rand", "custom")
IMPLS = ("reference", "robustlab")
PRECISIONS = ("fp32", "bf16")
_NORMS = {"linf": "Linf", "l2": "L2"}


def _reference() -> Any:
    try:
        import pyautoattack
    except ImportError:
        raise UserError("AutoAttack runs the authors' reference code: pip install pyautoattack") from None
    return pyautoattack


class _WarningLogger:
    """Stands in for the reference's `logging` logger: its checks become Python warnings (seen,
    filterable, and errors under `-W error`); its progress messages are dropped."""

    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass

    info = debug

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        warnings.warn(f"AutoAttack check: {msg % args if args else msg}", UserWarning, stacklevel=3)


@contextlib.contextmanager
def _keep_tracer() -> Iterator[None]:
    """The reference's dynamic-defense check ends with `sys.settrace(None)`; give back ours."""
    tracer = sys.gettrace()
    try:
        yield
    finally:
        sys.settrace(tracer)


@dataclass(frozen=True)
class AutoAttack:
    """Croce & Hein (2020): per-sample worst case over a fixed ensemble of parameter-free attacks.

    Args:
        threat: the ball (norm "linf" or "l2", eps) inside [0, 1].
        version: "standard" (APGD-CE, APGD-T, FAB-T, Square), "plus", "rand", or "custom".
        attacks: with "custom", the reference attacks to run, in order (`REFERENCE_ATTACKS`).
        seed: the reference's seed for every attack (results are deterministic for a seed and a
            batch; unlike PGD's per-sample seeds, they depend on the batch composition).
        batch_size: the reference's batch size (None: the whole batch at once).
        push_misclassified: move points misclassified from the start to a high-loss point that
            stays misclassified (see the module docstring); False: return them unchanged.
        impl: "reference" (the authors' code on the model) or "robustlab" (the same code on the
            model with BatchNorm folded, channels-last; see the module docstring).
        precision: with impl "robustlab", "fp32" or "bf16" (APGD's and Square's passes under
            autocast; FAB-T and every decision in float32).
    """

    threat: Threat = Threat()
    version: str = "standard"
    attacks: tuple[str, ...] = ()
    seed: int = 0
    batch_size: int | None = None
    push_misclassified: bool = True
    impl: str = "reference"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if not isinstance(self.attacks, tuple):
            object.__setattr__(self, "attacks", tuple(self.attacks))
        check_ranges([
            (self.version in VERSIONS, "version", self.version, f"one of {', '.join(VERSIONS)}"),
            (all(a in REFERENCE_ATTACKS for a in self.attacks), "attacks", list(self.attacks),
             f"AutoAttack's attacks, from {', '.join(REFERENCE_ATTACKS)}"),
            (isinstance(self.seed, int) and not isinstance(self.seed, bool), "seed", self.seed, "an integer"),
            (self.batch_size is None or (isinstance(self.batch_size, int) and self.batch_size >= 1),
             "batch_size", self.batch_size, "null or an integer >= 1"),
            (self.impl in IMPLS, "impl", self.impl, f"one of {', '.join(IMPLS)}"),
            (self.precision in PRECISIONS, "precision", self.precision, f"one of {', '.join(PRECISIONS)}"),
        ])
        if self.impl == "reference" and self.precision != "fp32":
            raise UserError(f"precision={self.precision!r} needs impl='robustlab': the reference "
                            "implementation runs the model as it is")
        if (self.version == "custom") != bool(self.attacks):
            raise UserError("attacks=[...] goes with version='custom' (and only with it); "
                            f"got version={self.version!r}, attacks={list(self.attacks)}")

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        check_inputs(x, y, target)
        if target is not None:
            raise UserError("AutoAttack is untargeted (APGD-T and FAB-T choose their own targets); "
                            "for given targets use pgd with target=...")
        x, y = x.detach(), y.detach()
        if len(x) == 0:
            return x.clone()
        ref = _reference()
        cuda = [x.device] if x.device.type == "cuda" else []
        with frozen_eval(model), torch.random.fork_rng(devices=cuda), _keep_tracer():
            with torch.no_grad():
                logits = model(x)
            exact = attack_copy(model, x) if self.impl == "robustlab" else model
            fast = in_bfloat16(exact) if self.precision == "bf16" else exact
            aa = self._build(ref, exact, fast, x.device, logits.shape[1])
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=self.batch_size or len(x))
            if self.push_misclassified:
                self._push(ref, fast, model, x, y, x_adv, logits.argmax(1) != y)
        return x_adv.detach()

    def _build(self, ref: Any, exact: nn.Module, fast: nn.Module, device: torch.device,
               num_classes: int) -> Any:
        """The reference's AutoAttack on `exact` (its checks and decisions, FAB), with APGD and
        Square on `fast`."""
        version = "standard" if self.version == "custom" else self.version
        aa = ref.AutoAttack(exact, norm=_NORMS[self.threat.norm], eps=self.threat.eps, seed=self.seed,
                            version=version, device=device)
        aa.apgd.model = aa.apgd_targeted.model = aa.square.predict = fast
        if self.version == "custom":  # the standard version's settings, a subset of its attacks
            aa.attacks_to_run, aa.version = list(self.attacks), "custom"
        aa.verbose = False
        aa.logger = aa.apgd.logger = aa.apgd_targeted.logger = _WarningLogger()
        # 9 target classes assume 10 or more classes; the reference indexes past the end otherwise.
        aa.apgd_targeted.n_target_classes = min(aa.apgd_targeted.n_target_classes, num_classes - 1)
        aa.fab.n_target_classes = min(aa.fab.n_target_classes, num_classes - 1)
        return aa

    def _push(self, ref: Any, attacked: nn.Module, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor,
              wrong: Tensor) -> None:
        """Misclassified-from-the-start points -> the reference APGD-CE's (run on `attacked`)
        highest-loss iterate, where `model` still misclassifies it (in place on x_adv)."""
        idx = wrong.nonzero().flatten()
        if len(idx) == 0:
            return
        apgd = ref.autopgd_base.APGDAttack(
            attacked, n_iter=100, norm=_NORMS[self.threat.norm], n_restarts=1, eps=self.threat.eps,
            seed=self.seed, loss="ce", rho=0.75, device=x.device, logger=_WarningLogger())
        torch.manual_seed(self.seed)  # the reference seeds only its adversarial-first mode
        pushed = apgd.perturb(x[idx], y[idx], best_loss=True)
        with torch.no_grad():
            keep = model(pushed).argmax(1) != y[idx]
        x_adv[idx[keep]] = pushed[keep].to(x_adv.dtype)


_NORMS_BOTH = ("linf", "l2")
register_bounded("autoattack", AutoAttack, norms=_NORMS_BOTH, paper=(
    "AutoAttack, Croce & Hein 2020 (ICML), standard version: APGD-CE, APGD-T, FAB-T, Square; "
    "the authors' reference code (pyautoattack)"))
register_bounded("apgd_ce", AutoAttack, norms=_NORMS_BOTH, version="custom", attacks=("apgd-ce",), paper=(
    "APGD-CE, Croce & Hein 2020, Algorithm 1 on cross-entropy: 100 steps, momentum 0.75, step "
    "halving at checkpoints; AutoAttack standard's first attack (reference code)"))
register_bounded("apgd_t", AutoAttack, norms=_NORMS_BOTH, version="custom", attacks=("apgd-t",), paper=(
    "APGD-T, Croce & Hein 2020: APGD on the targeted DLR loss, 9 target classes x 100 steps; "
    "AutoAttack standard's second attack (reference code)"))
