"""A recipe as a loss for your own training loop: `defense` (which is `robustlab.defense`).

The loss is the one `fit` minimises: the recipe's `Objective` (adversary, weighted terms) on a
`Step` of the batch, with your model seen through `HookedModel` (the embedding the input of its
last nn.Linear, the feature map the output of `feature_layer`). The adversary attacks in eval
mode inside `frozen_eval`, so the model's modes, buffers and `requires_grad` are as they were
after each call, as in the trainer.
"""

from __future__ import annotations

import copy

from torch import Tensor, nn

from robustlab.data import ClassIndex
from robustlab.defenses import FrozenTeacher, build_objective
from robustlab.defenses.step import Prepared
from robustlab.errors import UserError
from robustlab.experiment.build import check_layers
from robustlab.experiment.own_model import gather_images
from robustlab.models import HookedClassifier, HookedModel


class Defense:
    """`loss = defense(model, x, y)`: the recipe's adversarial examples of the batch and its
    weighted loss, to backward; `last` holds the loss and each term's value of the last call.

        defense = robustlab.defense("trades", eps=8/255)
        for x, y in loader:
            model.train()
            loss = defense(model, x, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            print(defense.last)  # {"loss": ..., "clean_ce": ..., "trades_kl": ...}
    """

    def __init__(self, recipe: str, objective, feature_layer: str | None, teacher: nn.Module | None):
        self.recipe = recipe
        self.objective = objective
        self.feature_layer = feature_layer
        # a copy: freezing puts a module in eval mode for good, and the teacher is yours
        self.teacher = None if teacher is None else FrozenTeacher(self._hooked(copy.deepcopy(teacher)))
        self.last: dict[str, float] = {}
        self._model: nn.Module | None = None
        self._wrapped: nn.Module | None = None

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        step = self.objective.step(self._for(model), x, y, teacher=self.teacher)
        terms = self.objective(step)
        self.last = {name: float(value.detach()) for name, value in terms.items()}
        return terms["loss"]

    def _for(self, model: nn.Module) -> nn.Module:
        """`model` with `forward_all` (hooked once per model), its layers checked on first use."""
        if model is not self._model:
            wrapped = self._hooked(model)
            if isinstance(wrapped, HookedModel):
                check_layers(wrapped, self.objective, self.recipe, type(model).__name__)
            self._model, self._wrapped = model, wrapped
        return self._wrapped

    def _hooked(self, model: nn.Module) -> nn.Module:
        if callable(getattr(model, "forward_all", None)):  # a robustlab Classifier already
            return model
        return HookedClassifier(model, self.feature_layer) if self.feature_layer else HookedModel(model)


def defense(recipe: str, eps: float | None = None, *, feature_layer: str | None = None,
            teacher: nn.Module | None = None, data: tuple[Tensor, Tensor] | None = None,
            label_smoothing: float = 0.0, **options) -> Defense:
    """The loss of `recipe` (`robustlab recipes`) at L-inf budget `eps` with its `options`, for
    your own loop: `loss = defense(model, x, y)` (see `Defense`).

    feature_layer: the module whose output is the feature map (agkd_bml, atat, aad_*).
    teacher: the trained model whose attention or outputs the student learns (agkd_bml, atat,
    distill). data: your training images and labels `(x, y)`, from which the recipes that pair
    an image with one of another class draw it (agkd_bml, bml, siamese_rvl, pdm).
    """
    objective = build_objective(recipe, eps=eps, label_smoothing=label_smoothing, **options)
    if objective.replays > 1:
        raise UserError(f"recipe {recipe!r} replays each minibatch {objective.replays} times inside the "
                        "trainer: train with robustlab.train(model, data, recipe=...)")
    if objective.needs_bank:
        raise UserError(f"recipe {recipe!r} injects a source network's saved images of the training "
                        "set: train with robustlab.train(model, data, recipe=...)")
    if objective.needs_teacher and teacher is None:
        raise UserError(f"recipe {recipe!r} learns from a frozen teacher: give teacher= a trained model")
    if not objective.needs_teacher and teacher is not None:
        raise UserError(f"recipe {recipe!r} reads no teacher: drop teacher=")
    prepared = [part for part in (objective.adversary, objective.pairing) if isinstance(part, Prepared)]
    if prepared and data is None:
        raise UserError(f"recipe {recipe!r} draws images of other classes to pair with each image: "
                        "give data=(x, y), your training images and labels")
    if prepared:
        objective.prepare(class_index=ClassIndex(gather_images(*data, limit=None).stored()))
    return Defense(recipe, objective, feature_layer, teacher)
