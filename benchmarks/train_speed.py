"""Training throughput of robustlab's `fit` against a bare PyTorch loop on the same work.

The bare loop (forward, cross-entropy, backward, SGD step over pre-made batches) is the limit our
loop can approach; the ratio ours/bare, measured alternately in one process, is what this
machine's noise cannot fake. Also summarises a finished run (epochs, time per epoch, images/s,
peak memory, accuracy) with --run.

    python benchmarks/train_speed.py [--model small_cnn] [--batches 60] [--repeats 3]
    python benchmarks/train_speed.py --run runs/standard_fmnist
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from robustlab.config import load_config
from robustlab.defenses import build_objective
from robustlab.experiment import RunDir, build_model, load_data, make_batches, seed_everything
from robustlab.train import fit


def bare_loop(model, batches) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    start = time.perf_counter()
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return sum(len(y) for _, y in batches) / (time.perf_counter() - start)


def ours(cfg, model, data) -> float:
    objective = build_objective("standard")
    data.evals = {}  # time training only
    start = time.perf_counter()
    fit(model, objective, data, cfg, device=torch.device("cpu"), files=RunDir(cfg.run_dir).files(),
        log=lambda _: None)
    return len(data.train) * cfg.data.batch_size / (time.perf_counter() - start)


def compare(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        n = args.batches * 128
        results = {"bare": [], "robustlab": [], "robustlab_channels_last": []}
        for repeat in range(args.repeats):
            for layout in ("contiguous", "channels_last"):
                cfg = load_config(None, [
                    f"model.name={args.model}", "train.epochs=1", f"data.train_limit={n}",
                    f"train.channels_last={layout == 'channels_last'}", f"out_dir={tmp}",
                    f"name=r{repeat}{layout}"])
                seed_everything(0)
                ds = load_data(cfg)
                data = make_batches(cfg, ds)
                if layout == "contiguous":
                    pre_made = list(data.train.epoch(0))
                    results["bare"].append(bare_loop(build_model(cfg, ds), pre_made))
                    results["robustlab"].append(ours(cfg, build_model(cfg, ds), data))
                else:
                    results["robustlab_channels_last"].append(ours(cfg, build_model(cfg, ds), data))
        median = {k: statistics.median(v) for k, v in results.items()}
        print(json.dumps({
            "model": args.model, "threads": torch.get_num_threads(), "images": n,
            **{f"{k}_images_per_s": round(v) for k, v in median.items()},
            "ratio_robustlab_over_bare": round(median["robustlab"] / median["bare"], 3),
            "ratio_channels_last_over_contiguous":
                round(median["robustlab_channels_last"] / median["robustlab"], 3),
            "runs": {k: [round(v) for v in vs] for k, vs in results.items()}}))


def summarise(run_dir: Path) -> None:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    times = [r["time_s"] for r in epochs]
    print(json.dumps({
        "run": str(run_dir), "epochs": len(epochs), "final_test_acc": epochs[-1].get("test_acc"),
        "best_test_acc": max(r.get("test_acc", 0) for r in epochs),
        "median_epoch_s": round(statistics.median(times), 1),
        "median_images_per_s": round(statistics.median(r["images_per_s"] for r in epochs)),
        "peak_mem_mb": round(max(r["peak_mem_mb"] for r in epochs)), "total_min": round(sum(times) / 60, 1),
    }))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run", type=Path, help="summarise this finished run instead")
    args = parser.parse_args()
    summarise(args.run) if args.run else compare(args)
