"""`Step`: one training batch with lazily computed, cached model outputs."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import NamedTuple

import torch
from torch import Tensor, nn

from robustlab.attention import grad_cam
from robustlab.errors import UserError
from robustlab.models import Out


class Pairs(NamedTuple):
    """What a pairing adversary returns (AGKD-BML Alg. 1 steps a-b2): the forward adversarial
    examples of x[:k], a clean partner per image drawn from another class, and the partners'
    own (backward) adversarial examples."""

    x_adv: Tensor
    partner: Tensor
    partner_y: Tensor
    partner_adv: Tensor


class Siamese(NamedTuple):
    """PDM's Siamese counterparts (Alg. 1 lines 5-14): per image a clean sample `x` of class `y`,
    and `same` = 1.0 where y is the image's own class, else 0.0."""

    x: Tensor
    y: Tensor
    same: Tensor


# The image sets a Step can forward together (see Step's `joint`).
JOINT_SETS = ("clean", "adv", "partner_adv")

class Prepared:
    """An adversary or pairing that needs what only the trainer has, handed over once by
    `Objective.prepare` before training: the training split's class index (partners of
    AGKD-BML's bidirectional pairs, PDM's Siamese counterparts) or the Cascade source's images
    (`needs_bank`)."""

    needs_bank = False

    def prepare(self, *, class_index=None, bank=None) -> None:
        """Keep what this part draws from; the default takes the class index."""
        self.class_index = class_index


# (model, x, y) -> adversarial versions of the first k <= B images of x, or `Pairs`
# (see defenses.adversaries)
Adversary = Callable[[nn.Module, Tensor, Tensor], "Tensor | Pairs"]
# (x, y) -> Siamese counterparts (see defenses.pairing)
Pairing = Callable[[Tensor, Tensor], Siamese]


class Step:
    """A batch (x, y) and what terms need of it, each computed at most once per batch.

    `forward_all` is the callable that produces `Out` with gradients: the model's own
    `forward_all`, or a DistributedDataParallel wrapper of it, so gradient synchronisation
    happens however many terms read `clean` or `adv`. The adversary is called at most once
    (`x_adv`), and the teacher only when a term reads its outputs.

    `joint` names the image sets ("clean", "adv", "partner_adv") that go through the model as
    one concatenated train-mode forward, split back per set on the first read of any of them:
    BatchNorm then normalises them with one batch's statistics and updates its running
    statistics once, as the AGKD-BML and ATAT authors' code does. Sets not named (and every set
    when `joint` is empty) get a forward of their own.
    """

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        forward_all: Callable[[Tensor], Out] | None = None,
        adversary: Adversary | None = None,
        teacher: nn.Module | None = None,
        pairing: Pairing | None = None,
        index: Tensor | None = None,
        joint: tuple[str, ...] = (),
    ):
        unknown = set(joint) - set(JOINT_SETS)
        if unknown:
            raise ValueError(f"joint forward of unknown image set(s) {sorted(unknown)}; known: {JOINT_SETS}")
        self.joint = joint
        self.model = model
        self.index = index  # the images' indices in the training split (cascade's saved images)
        self.x = x
        self.y = y
        self.adversary = adversary
        self.teacher = teacher
        self.pairing = pairing
        self._forward_all = forward_all or model.forward_all
        self._memo: dict[str, object] = {}

    def forward(self, x: Tensor) -> Out:
        """Outputs on other inputs (AAD's masked images), with gradients, through the same
        (possibly DDP-wrapped) forward as `clean` and `adv`."""
        return self._forward_all(x)

    def _inputs(self, which: str) -> Tensor:
        return {"clean": lambda: self.x, "adv": lambda: self.x_adv,
                "partner_adv": lambda: self.pairs.partner_adv}[which]()

    def _outputs(self, which: str) -> Out:
        if which in self._joint_sets:
            return self._joint_outputs[which]
        return self._forward_all(self._inputs(which))

    @cached_property
    def _joint_sets(self) -> tuple[str, ...]:
        """The `joint` sets this batch has (partners only when the adversary made them)."""
        sets = tuple(s for s in JOINT_SETS if s in self.joint and (s != "partner_adv" or self.has_pairs))
        return sets if len(sets) > 1 else ()

    @cached_property
    def _joint_forward(self) -> tuple[Out, dict[str, slice]]:
        """The one forward of the joint sets, and each set's rows in it."""
        inputs = [self._inputs(which) for which in self._joint_sets]
        rows, start = {}, 0
        for which, x in zip(self._joint_sets, inputs):
            rows[which], start = slice(start, start + len(x)), start + len(x)
        return self._forward_all(torch.cat(inputs)), rows

    @cached_property
    def _joint_outputs(self) -> dict[str, Out]:
        out, rows = self._joint_forward
        return {which: out.rows(r) for which, r in rows.items()}

    def forward_rows(self, which: str) -> tuple[Out, slice]:
        """The outputs of the forward that made `which`'s ("clean", "adv", "partner_adv"), and its
        rows in them: a Grad-CAM differentiates those logits w.r.t. that forward's feature map."""
        if which in self._joint_sets:
            out, rows = self._joint_forward
            return out, rows[which]
        out = getattr(self, which)
        return out, slice(0, len(out.logits))

    @cached_property
    def clean(self) -> Out:
        """Outputs on the clean batch (one forward, shared by every term)."""
        return self._outputs("clean")

    @cached_property
    def siamese(self) -> Siamese:
        """The Siamese counterpart of every image (PDM), drawn once per batch."""
        if self.pairing is None:
            raise UserError("a loss term needs Siamese counterparts, which only the PDM recipes "
                            "draw: use recipe siamese_rvl or pdm")
        return self.pairing(self.x, self.y)

    @cached_property
    def siamese_out(self) -> Out:
        """Outputs on the Siamese counterparts (with gradients): the second sub-network."""
        return self._forward_all(self.siamese.x)

    @cached_property
    def x_adv(self) -> Tensor:
        """Adversarial versions of x[:k] (k = B for most recipes; Kurakin's and the Cascade
        recipes attack k < B)."""
        if self.adversary is None:
            raise UserError("a loss term needs adversarial examples, but this objective has no "
                            "adversary: use a recipe that makes them (madry, trades, ...)")
        extra = {"index": self.index} if getattr(self.adversary, "needs_index", False) else {}
        made = self.adversary(self.model, self.x, self.y, **extra)
        if isinstance(made, Pairs):
            self._pairs = made
            return made.x_adv
        return made

    @property
    def pairs(self) -> Pairs:
        """The partners of a pairing adversary (bidirectional metric learning)."""
        self.x_adv  # noqa: B018 - runs the adversary, which sets the pairs
        pairs = getattr(self, "_pairs", None)
        if pairs is None:
            raise UserError("a loss term needs partner images and their backward adversarial "
                            "examples, which only the bidirectional adversary makes: use recipe "
                            "agkd_bml, agkd_bml_7, agkd or bml")
        return pairs

    @property
    def has_pairs(self) -> bool:
        """Whether the adversary made partners (it runs the adversary if needed)."""
        self.x_adv  # noqa: B018
        return getattr(self, "_pairs", None) is not None

    @cached_property
    def partner_adv(self) -> Out:
        """Outputs on the partners' backward adversarial examples (with gradients)."""
        return self._outputs("partner_adv")

    @property
    def k(self) -> int:
        """How many leading images of the batch have an adversarial version."""
        return len(self.x_adv)

    @property
    def y_adv(self) -> Tensor:
        return self.y[: self.k]

    @cached_property
    def adv(self) -> Out:
        """Outputs on the adversarial images x_adv (with gradients)."""
        return self._outputs("adv")

    @cached_property
    def mixed(self) -> Out:
        """Outputs on the batch whose first k images are replaced by their adversarial versions:
        Kurakin et al. (2017)'s minibatch, one forward of B images."""
        return self._forward_all(torch.cat([self.x_adv, self.x[self.k:]]))

    @cached_property
    def augmented(self) -> Out:
        """Outputs on [x_adv; x], one forward of B + k images: the clean batch with the k
        adversarial versions *added* beside their originals (the Cascade paper's Alg. 1, B')."""
        return self._forward_all(torch.cat([self.x_adv, self.x]))

    @property
    def y_augmented(self) -> Tensor:
        return torch.cat([self.y_adv, self.y])

    @cached_property
    def teacher_clean(self) -> Out:
        """The frozen teacher's outputs on x (no gradients)."""
        return self._teacher(self.x)

    @cached_property
    def teacher_adv(self) -> Out:
        """The frozen teacher's outputs on x_adv (no gradients)."""
        return self._teacher(self.x_adv)

    @cached_property
    def teacher_partner(self) -> Out:
        """The frozen teacher's outputs on the clean partners (no gradients)."""
        return self._teacher(self.pairs.partner)

    @cached_property
    def teacher_cam(self) -> Tensor:
        """The frozen teacher's Grad-CAM on x[:k] for the true labels, [k, h, w] (ATAT eq. 3)."""
        teacher = self._required_teacher()
        return grad_cam(getattr(teacher, "model", teacher), self.x[: self.k], self.y_adv)

    def _required_teacher(self) -> nn.Module:
        if self.teacher is None:
            raise UserError("a loss term needs a teacher model, but this run has none: "
                            "teacher terms go with a recipe that builds a teacher")
        return self.teacher

    def _teacher(self, x: Tensor) -> Out:
        with torch.no_grad():
            return self._required_teacher().forward_all(x)

    def memo(self, key: str, compute: Callable[[], object]) -> object:
        """A value derived from the outputs (e.g. SML's hard negatives), computed once per batch
        however many terms read it."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def counts(self) -> dict[str, Tensor]:
        """Training accuracy counts from the outputs this batch computed anyway: `correct` of the
        B clean images (from `clean`, or Cascade's B' = [x_adv; x]), and `adv_correct` of the k
        adversarial ones with `adv_n` = k; empty where no such outputs were computed."""
        counts: dict[str, Tensor] = {}
        clean, adv = self._computed("clean"), self._computed("adv")
        if clean is not None:
            counts["correct"] = (clean.logits.argmax(1) == self.y).sum().float()
        elif self.cached("augmented"):
            counts["correct"] = (self.augmented.logits[self.k:].argmax(1) == self.y).sum().float()
        adv = adv.logits if adv is not None else (
            self.augmented.logits[: self.k] if self.cached("augmented") else None)
        if adv is not None:
            counts["adv_correct"] = (adv.argmax(1) == self.y_adv).sum().float()
            counts["adv_n"] = torch.tensor(float(self.k), device=adv.device)
        return counts

    def _computed(self, which: str) -> Out | None:
        """`which`'s outputs if this batch computed them (on its own or in the joint forward)."""
        if self.cached(which):
            return self.__dict__[which]
        if self.cached("_joint_forward") and which in self._joint_forward[1]:
            return self._joint_outputs[which]
        return None

    def cached(self, name: str) -> bool:
        """Whether `name` (e.g. "clean", "x_adv") has been computed for this batch."""
        return name in self.__dict__
