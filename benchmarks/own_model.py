"""A recipe as the loss of your own loop: one optimizer step with `robustlab.defense("trades")`
against one with the TRADES authors' `trades_loss` (Zhang et al. 2019, their train_trades_*.py:
re-expressed below step for step) on the same plain nn.Module, batch and settings, interleaved in
one process, with a plain cross-entropy step as the floor.

    python benchmarks/own_model.py [--steps 30] [--batch 128] [--threads 2]

The authors' attack recomputes f(x) at every one of its steps and their loss forwards x twice;
robustlab's objective forwards x once per attack (the KL target is fixed) and once in the loss.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from results_file import command_line, publish  # this folder is on sys.path
from torch import nn

import robustlab
from robustlab.data import load_dataset

EPS, STEP_SIZE, ATTACK_STEPS, BETA = 0.1, 0.01, 10, 6.0


class Net(nn.Module):
    """A plain CNN of small_cnn's size (two conv blocks with BatchNorm, two Linear)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(64 * 7 * 7, 256)
        self.out = nn.Linear(256, 10)

    def forward(self, x):
        return self.out(F.relu(self.fc(self.body(x).flatten(1))))


def authors_trades_loss(model, x, y, optimizer, step_size=STEP_SIZE, epsilon=EPS, perturb_steps=ATTACK_STEPS,
                        beta=BETA):
    """The TRADES authors' trades_loss: the attack in eval mode from x + 0.001 N(0, 1), KL(sum) to
    softmax(f(x)) recomputed at each step; then CE + beta KL(sum) / B in train mode."""
    kl = nn.KLDivLoss(reduction="sum")
    model.eval()
    x_adv = x.detach() + 0.001 * torch.randn_like(x)
    for _ in range(perturb_steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_kl = kl(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1))
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.clamp(torch.min(torch.max(x_adv, x - epsilon), x + epsilon), 0.0, 1.0)
    model.train()
    optimizer.zero_grad()
    logits = model(x)
    loss_natural = F.cross_entropy(logits, y)
    loss_robust = kl(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1)) / len(x)
    return loss_natural + beta * loss_robust


def timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(prog="own_model.py", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps of each loss")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only; leave results.md as it is")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = load_dataset("fashion-mnist").train
    x_all, y_all = train.images.float() / 255, train.labels
    torch.manual_seed(0)
    start = Net()
    models = {name: copy.deepcopy(start) for name in ("robustlab", "authors", "ce")}
    opts = {name: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for name, m in models.items()}
    defense = robustlab.defense("trades", eps=EPS, step_size=STEP_SIZE, steps=ATTACK_STEPS, beta=BETA)

    def step(name: str, i: int):
        model, opt = models[name], opts[name]
        x, y = x_all[i * args.batch:(i + 1) * args.batch], y_all[i * args.batch:(i + 1) * args.batch]

        def run():
            model.train()
            if name == "robustlab":
                loss = defense(model, x, y)
            elif name == "authors":
                loss = authors_trades_loss(model, x, y, opt)
            else:
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return run

    seconds: dict[str, list[float]] = {name: [] for name in models}
    for i in range(args.steps + 2):  # interleaved; the first two steps are warm-up
        for name in (("robustlab", "authors", "ce") if i % 2 else ("authors", "robustlab", "ce")):
            t = timed(step(name, i))
            if i >= 2:
                seconds[name].append(t)
    med = {name: statistics.median(ts) for name, ts in seconds.items()}
    ratios = [a / r for a, r in zip(seconds["authors"], seconds["robustlab"])]
    lines = [
        "## Your own model: robustlab.defense vs the authors' trades_loss",
        "",
        f"Command: `{command_line(parser, args)}`. One optimizer step (the TRADES loss with its PGD-"
        f"{ATTACK_STEPS} on the KL, eps {EPS}, step {STEP_SIZE}, beta {BETA}, then backward and SGD) on a "
        f"plain CNN of small_cnn's size (`Net`, BatchNorm), Fashion-MNIST batches of {args.batch}, "
        f"{args.threads} threads; each loss on its own copy of the same initial weights and the same "
        f"batches, interleaved step by step ({args.steps} timed steps each, after 2 warm-up).",
        "",
        "| loss | median ms / step | vs the authors' |",
        "|---|---|---|",
        f"| `robustlab.defense(\"trades\")` | {1000 * med['robustlab']:.1f} | "
        f"{med['authors'] / med['robustlab']:.2f}x faster |",
        f"| the authors' `trades_loss` | {1000 * med['authors']:.1f} | 1.00x |",
        f"| cross-entropy only (the floor) | {1000 * med['ce']:.1f} | - |",
        "",
        f"Per-step ratio authors / robustlab: median {statistics.median(ratios):.2f}, range "
        f"{min(ratios):.2f}-{max(ratios):.2f} over {len(ratios)} interleaved pairs. The authors' attack "
        "forwards x again at each of its steps (softmax(f(x)) is its KL target) and their loss forwards x "
        "twice; robustlab computes the target once per attack and forwards x once in the loss.",
    ]
    publish("\n".join(lines), args.no_write)


if __name__ == "__main__":
    main()
