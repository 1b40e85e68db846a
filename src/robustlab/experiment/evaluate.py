"""The evaluate job of a robustlab run: clean accuracy, and an evaluation suite with its report
(own_model.py does the same for any nn.Module)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

from robustlab import __version__
from robustlab.data import Batches, check_eps, default_eps
from robustlab.errors import UserError
from robustlab.eval import accuracy
from robustlab.eval.suite import Suite, load_suite
from robustlab.experiment.build import load_data, load_run
from robustlab.experiment.rundir import RunDir, suite_state
from robustlab.experiment.training import standard_source
from robustlab.train import dist_from_env, init_distributed, resolve_device
from robustlab.train.device import compile_model
from robustlab.train.fit import say


def evaluate_clean(path: str | Path, *, which: str = "last", data_dir: str | None = None,
                   batch_size: int | None = None, device: str = "auto",
                   log: Callable[[str], None] = say) -> dict:
    """Clean accuracy of a saved model on its dataset's full test split."""
    loaded = load_run(path, which, data_dir)
    if note := loaded.unfinished_note():
        log(note)
    cfg = loaded.cfg
    cfg.data.test_limit = None  # always the full test set, whatever training watched
    ds = load_data(cfg)
    dev = resolve_device(device)
    model = loaded.model.to(dev)
    batches = Batches(ds.test, batch_size or cfg.data.eval_batch_size, shuffle=False, device=dev)
    acc = accuracy(model, batches, dev)
    return {"run": cfg.name, "checkpoint": str(loaded.checkpoint), "trained": loaded.trained,
            "dataset": ds.name, "model": cfg.model.name, "test_images": len(ds.test), "clean_accuracy": acc}


def evaluate_suite(path: str | Path, suite_name: str | Suite, *, which: str = "last",
                   limit: int | None = None, eps: float | None = None, data_dir: str | None = None,
                   device: str = "auto", batch_size: int | None = None, source: str | None = None,
                   out: str | None = None, compile: bool = False,
                   log: Callable[[str], None] = say) -> dict:
    """Run an evaluation suite (a built-in name, a YAML path or a `Suite`) on a saved model and write
    its report (rank 0 under torchrun); `compile` runs the model through torch.compile
    (train/device.compile_model)."""
    from robustlab.eval.suite_run import Shard, run_suite
    from robustlab.report import write_report

    suite = suite_name if isinstance(suite_name, Suite) else load_suite(suite_name)
    check_limit(limit)
    path = Path(path)
    loaded = load_run(path, which, data_dir)
    cfg = loaded.cfg
    cfg.data.test_limit = None
    ds = load_data(cfg)
    n = min(len(ds.test), limit or suite.images or len(ds.test))
    x, y = ds.test.images[:n].float().div(255), ds.test.labels[:n]
    eps = check_eps(eps if eps is not None else default_eps(ds.name), "--eps")
    dist = dist_from_env()
    dev = resolve_device(device, dist.local_rank)
    init_distributed(dist, dev)
    out_dir = Path(out) if out else RunDir.of(path, loaded.checkpoint).report(loaded.checkpoint.stem)

    def sources(spec: str):
        spec = source or spec
        if spec == "standard":
            return standard_source(cfg, dev, log if dist.is_main else (lambda _: None))
        return load_run(spec, "last", data_dir).model.to(dev).eval()

    if dist.is_main:
        log(f"{suite.name} suite on {cfg.name} ({loaded.checkpoint}): {n} {ds.name} test images, "
            f"eps {eps:.4g}, {len(suite.attacks)} attacks" + (f", {dist.world_size} processes" if dist.enabled
                                                             else ""))
        if note := loaded.unfinished_note():
            log(note)
    if compile:
        compile_model(loaded.model.to(dev), dev, log)
    body = run_suite(loaded.model, x, y, suite, eps=eps, num_classes=ds.num_classes, device=dev,
                     batch_size=batch_size or cfg.data.eval_batch_size, sources=sources,
                     state_path=suite_state(out_dir), shard=Shard(dist.rank, dist.world_size),
                     state_key=f"{loaded.checkpoint.resolve()}@{loaded.state.get('global_step')}:{source}",
                     log=log if dist.is_main else (lambda _: None))
    body["outcomes"]["images"]["split"] = "test"  # its first n images
    report = {"run": cfg.name, "checkpoint": str(loaded.checkpoint), "trained": loaded.trained,
              "dataset": ds.name, "class_names": list(ds.class_names),
              "model": loaded.model.arch.get("class", cfg.model.name),  # your own model: its class
              "recipe": cfg.defense.recipe, **body, **stamp(dev, dist.world_size)}
    if dist.is_main:
        report["files"] = {k: str(v) for k, v in write_report(report, out_dir).items()}
    return report


def check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise UserError(f"--limit={limit} is out of range: expected > 0")


def stamp(dev: torch.device, processes: int) -> dict:
    """When, by which versions and where a report was made."""
    return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "robustlab_version": __version__,
            "environment": {"torch": torch.__version__, "device": str(dev), "processes": processes}}
