"""Pintor et al.'s indicators of attack failure on models built to fail in each known way, the
best-iterate mitigation, and the report section (`eval.indicators`, `attacks.trace`)."""

import json

import jsonschema
import pytest
import torch
from torch import nn

from robustlab.attacks import ATTACKS, transfer
from robustlab.attacks.pgd import PGD
from robustlab.attacks.threat import Threat
from robustlab.attacks.trace import late_progress, tracing
from robustlab.eval import indicators
from robustlab.eval.suite import load_suite
from robustlab.eval.suite_run import run_suite
from robustlab.report import markdown, schema, to_html


class Band(nn.Module):
    """Class 1 only while the mean pixel m is within 0.0224 of 0.535, class 0 elsewhere: PGD on
    CE(y=0) from m = 0.5 with steps of 0.03 goes 0.50 -> 0.53 (class 1) -> 0.56 (class 0)."""

    def forward(self, x):
        m = x.mean((1, 2, 3))
        return torch.stack([torch.zeros_like(m), 10 - 20000 * (m - 0.535) ** 2], 1)


class Linear4(nn.Module):
    """A seeded linear model of 2x2 images into 3 classes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))


class Rounding(Linear4):
    """Rounds its input to quarters before the linear layer: zero input gradient everywhere."""

    def forward(self, x):
        return super().forward(torch.round(x * 4) / 4)


class Noisy(Linear4):
    """Fresh Gaussian noise (sd 3) on its logits at every forward: a randomised model."""

    def forward(self, x):
        logits = super().forward(x)
        return logits + 3 * torch.randn_like(logits)


class Constant(nn.Module):
    """Always class 0, whatever the input (a gradient of zero, an unbreakable class)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.tensor([5.0, 0.0, 0.0]).expand(len(x), 3) + self.scale * x.flatten(1)[:, :3]


def linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


def half_images(n: int = 6):
    return torch.full((n, 1, 2, 2), 0.5), torch.zeros(n, dtype=torch.long)


def test_silent_success_is_seen_on_the_last_iterate_and_gone_with_the_best():
    x, y = half_images()
    model = Band()
    settings = dict(threat=Threat("linf", 0.1), steps=2, step_size=0.03, random_start=False)
    with tracing() as calls:
        last = PGD(iterate="last", **settings)(model, x, y)
    assert (model(last).argmax(1) == 0).all()  # the returned point (m = 0.56) is not adversarial
    assert calls[0]["seen"].all()  # ... but x_1 (m = 0.53) was
    best = PGD(**settings)(model, x, y)  # the default: the best iterate
    assert (model(best).argmax(1) == 1).all() and torch.allclose(best.mean((1, 2, 3)), torch.full((6,), 0.53))
    outcome = {"clean": torch.ones(6, dtype=torch.bool), "robust": torch.ones(6, dtype=torch.bool),
               **indicators.traced(calls, 6)}
    assert indicators.attack_indicators(outcome)["silent_success"].all()


def test_late_progress_is_pintors_incomplete_optimisation_measure():
    # rising to the end: the running best moves by the whole range over the last steps
    assert late_progress([torch.tensor([v]) for v in (0.0, 1.0, 2.0, 3.0)]).item() == pytest.approx(1.0)
    # converged early (a plateau over the last 10 of 12 values): no progress
    trace = [0.0, 10.0] + [10.0] * 10
    assert late_progress([torch.tensor([v]) for v in trace]).item() == 0.0
    # a drop inside the window is replaced by the running best: the window (the last 10 of 12)
    # moves from 10 to 10.1 only, 0.1 / 10.1 of the range (the raw trace would span 5 to 10.1)
    trace = [0.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 5.0, 10.0, 10.0, 10.1]
    assert late_progress([torch.tensor([v]) for v in trace]).item() == pytest.approx(0.1 / 10.1, rel=1e-5)
    assert torch.isnan(late_progress([torch.tensor([1.0])])).all()  # one step measures nothing


def test_too_few_steps_are_incomplete_and_enough_steps_are_not():
    model = linear()
    x, y = torch.rand(8, 1, 2, 2), torch.randint(0, 3, (8,))
    with tracing() as short:
        PGD(Threat("linf", 0.5), steps=4, step_size=0.001)(model, x, y)  # crawls: still rising
    with tracing() as long:
        PGD(Threat("linf", 0.01), steps=40, step_size=0.005)(model, x, y)  # at the ball's corner early
    assert (short[0]["progress"] > 0.05).all()
    assert (long[0]["progress"] <= 0.05).all()
    with tracing() as one:
        ATTACKS.build("fgsm", eps=0.1)(model, x, y)
    assert torch.isnan(one[0]["progress"]).all()  # one step: no optimisation to judge


def test_a_transfer_from_an_unrelated_source_fools_the_source_not_the_model():
    source, target = linear(0), Constant()
    x, y = torch.rand(8, 1, 2, 2), torch.zeros(8, dtype=torch.long)
    with torch.no_grad():
        y = source(x).argmax(1)  # the source is right on every image before the attack
    attack = transfer(source, "pgd", eps=1.0, steps=20)
    with tracing() as calls:
        x_adv = attack(target, x, y)
    assert (source(x_adv).argmax(1) != y).all()  # fooled the source
    assert calls[0]["source_fooled"].all() and set(calls[0]) == {"source_fooled"}  # no trace of the inner PGD


def test_the_probe_flags_rounding_noise_and_an_unbreakable_model_and_not_a_linear_one():
    x, y = torch.rand(16, 1, 2, 2), torch.zeros(16, dtype=torch.long)
    rounding = indicators.probe(Rounding(), x, y, eps=0.1)
    assert rounding["unavailable_gradients"].all()
    noisy = indicators.probe(Noisy(), x, y, eps=0.1)
    assert noisy["unstable_predictions"].all() and not noisy["unavailable_gradients"].any()
    constant = indicators.probe(Constant(), x, y, eps=0.1)
    assert constant["unconstrained_failure"].all()  # the whole box and still class 0
    # A deterministic linear model on 28x28 images, probed (as the suite does) on the points
    # PGD left robust: random noise in +-eps/2 moves a 784-pixel margin by a few percent of what
    # the worst case at eps does, so nothing fires.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 3))
    x = torch.rand(200, 1, 28, 28)
    with torch.no_grad():
        y = model(x).argmax(1)
        robust = model(ATTACKS.build("pgd", eps=0.01, steps=20)(model, x, y)).argmax(1) == y
    assert robust.sum() >= 20
    quiet = indicators.probe(model, x[robust], y[robust], eps=0.01)
    assert not any(quiet[name].any() for name in indicators.PROBED), quiet
    assert (quiet["unstable_value"] < indicators.UNSTABLE / 2).all()


def test_every_report_carries_the_indicators_and_its_schema_holds(tmp_path):
    """A suite on a model that rounds its input: the indicators section is in report.json (valid
    against the schema), report.md and report.html, with the mitigation in the verdict."""
    model = Rounding()
    x, y = torch.rand(20, 1, 2, 2), torch.randint(0, 3, (20,))
    body = run_suite(model, x, y, load_suite("quick"), eps=0.1, num_classes=3, log=lambda _: None)
    section = body["indicators"]
    assert body["schema"] == "robustlab.report/3"
    pgd = next(row for row in section["attacks"] if row["label"] == "PGD-20")
    assert pgd["robust_points"] > 0 and pgd["counts"]["unavailable_gradients"] == pgd["robust_points"]
    assert pgd["failed"] == pgd["robust_points"]
    assert any("gradient-free attack (Square)" in line for line in section["verdict"])
    report = {"name": "rounding", "dataset": "synthetic", "model": "Rounding", **body,
              "created": "now", "robustlab_version": "0"}
    jsonschema.validate(json.loads(json.dumps(report)), schema())
    assert "## Indicators of attack failure (Pintor et al. 2022)" in markdown(report)
    assert 'Next: robustlab.evaluate(model, ..., suite="autoattack", limit=20)' in markdown(report)
    run = {**report, "checkpoint": "runs/r/checkpoints/last.pt"}
    assert "Next: robustlab eval runs/r/checkpoints/last.pt --suite autoattack --limit 20" in to_html(run)
    assert "Indicators of attack failure" in to_html(report)
    old = {k: v for k, v in report.items() if k != "indicators"} | {"schema": "robustlab.report/2"}
    jsonschema.validate(json.loads(json.dumps(old)), schema())  # reports of schema 2 stay valid
    assert "Indicators" not in markdown(old)
    assert "| 0 | " in markdown(report)  # the eps curve starts at the clean point


def test_best_iterate_never_raises_robust_accuracy_and_training_keeps_the_last():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.rand(64, 1, 2, 2), torch.randint(0, 3, (64,))
    for steps in (5, 20):
        best = ATTACKS.build("pgd", eps=0.2, steps=steps)(model, x, y)
        last = ATTACKS.build("pgd", eps=0.2, steps=steps, iterate="last")(model, x, y)
        with torch.no_grad():
            assert ((model(best).argmax(1) == y) <= (model(last).argmax(1) == y)).all()
    from robustlab.defenses.adversaries import training_pgd

    assert training_pgd(0.1, 7).iterate == "last"


def test_compare_overlays_the_eps_curves_and_shows_strips_and_indicators_per_run():
    from robustlab.report import compare_html, compare_markdown

    x, y = torch.rand(20, 1, 2, 2), torch.randint(0, 3, (20,))
    reports = []
    for name, model in (("rounding", Rounding()), ("linear", linear())):
        body = run_suite(model, x, y, load_suite("quick"), eps=0.1, num_classes=3, log=lambda _: None)
        reports.append({"name": name, "dataset": "synthetic", "model": name, **body, "created": "now",
                        "robustlab_version": "0"})
    page = compare_html(reports)
    plot = page.split("<h2>Accuracy vs eps</h2>")[1].split("</svg>")[0]
    assert plot.count("<path") == 2 and ">rounding</text>" in plot and ">linear</text>" in plot
    assert plot.count(">0</text>") == 1  # the shared clean point at eps 0
    assert page.count('<div class="strip">') == 2  # both runs' examples
    text = compare_markdown(reports)
    indicator_table = text.split("Indicators of attack failure (Pintor et al. 2022)")[1]
    rounding_row = next(line for line in indicator_table.splitlines() if line.startswith("| rounding |"))
    points = reports[0]["indicators"]["probe"]["points"]
    cells = [c.strip() for c in rounding_row.strip("|").split("|")]
    assert points > 0 and cells[1] == str(points)
    assert cells[5] == f"{points} (100.0%)"  # unavailable gradients on every probed point
