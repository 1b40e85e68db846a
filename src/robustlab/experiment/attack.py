"""The attack job: one attack on a saved model, optionally saving the adversarial set."""

from __future__ import annotations

from pathlib import Path

import torch

from robustlab.attacks import ATTACKS, save_adversarial_set
from robustlab.data import Batches, default_eps
from robustlab.errors import UserError
from robustlab.eval import attack_batches
from robustlab.experiment.build import load_data, load_run, subset_of
from robustlab.train import resolve_device


def attack_run(path: str | Path, attack_name: str, params: dict, *, which: str = "last",
               split: str = "test", limit: int | None = None, sample: int | None = None,
               seed: int = 0, batch_size: int | None = None, data_dir: str | None = None,
               device: str = "auto", save: str | None = None) -> dict:
    """Attack a saved model on a split of its data set; optionally save the adversarial set.
    `limit` takes the first N images (as `robustlab eval --limit`), `sample` a random N drawn
    with `seed`; neither: the whole split."""
    if split not in ("test", "train"):
        raise UserError(f"--split={split!r} is not a split: use test or train")
    for flag, value in (("--limit", limit), ("--sample", sample)):
        if value is not None and value <= 0:
            raise UserError(f"{flag}={value} is out of range: expected > 0")
    if limit is not None and sample is not None:
        raise UserError("--limit (the first N images) and --sample (a random N) exclude each other; "
                        "give one")
    if batch_size is not None and batch_size <= 0:
        raise UserError(f"--batch-size={batch_size} is out of range: expected > 0")
    loaded = load_run(path, which, data_dir)
    cfg = loaded.cfg
    cfg.data.test_limit = cfg.data.train_limit = None
    ds = load_data(cfg)
    data = ds.test if split == "test" else ds.train
    data = data.subset(torch.arange(min(limit, len(data)))) if limit else subset_of(data, sample, seed)
    params = {"eps": default_eps(ds.name), **params}
    attack = ATTACKS.build(attack_name, **params)
    dev = resolve_device(device)
    model = loaded.model.to(dev)
    batches = Batches(data, batch_size or cfg.data.eval_batch_size, shuffle=False, device=dev)
    result = attack_batches(model, batches, attack, device=dev, keep=save is not None)
    summary = {"run": cfg.name, "checkpoint": str(loaded.checkpoint), "dataset": ds.name,
               "split": split, "attack": attack_name, "params": params,
               "images_chosen": f"the first {len(data)}" if limit else
               f"a random {len(data)} (seed {seed})" if sample else f"all {len(data)}", **result.summary()}
    if save:
        save_adversarial_set(save, torch.cat(result.x_adv), torch.cat(result.labels), {
            "attack": attack_name, "eps": params["eps"], "norm": params.get("norm", "linf"),
            "params": params, "source_checkpoint": str(loaded.checkpoint),
            "source_arch": loaded.state["arch"], "dataset": ds.name, "split": split,
            "seed": params.get("seed", 0)})
        summary["saved"] = str(save)
    return summary
