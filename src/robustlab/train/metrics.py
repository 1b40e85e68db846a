"""What training records: running sums over an epoch, the epoch record, metrics.jsonl."""

from __future__ import annotations

import json
import math
import resource
from pathlib import Path

import torch
from torch import Tensor

from robustlab.errors import UserError
from robustlab.train.distributed import DistInfo, all_reduce_sum


class MetricsLog:
    """Append-only metrics.jsonl, written by the main process only; with `tensorboard` (a folder)
    the same numbers as TensorBoard scalars too, tagged <kind>/<key> at the record's step."""

    def __init__(self, path: Path, enabled: bool, tensorboard: Path | None = None):
        self.path, self.enabled = path, enabled
        self.board = _summary_writer(tensorboard) if enabled and tensorboard is not None else None

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.board is not None:
            for key, value in record.items():
                if key not in ("kind", "epoch", "step") and isinstance(value, (int, float)) \
                        and not isinstance(value, bool):
                    self.board.add_scalar(f"{record.get('kind', 'step')}/{key}", value, record["step"])
            self.board.flush()  # an interrupted run keeps every scalar written so far

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def tensorboard_writer():
    """TensorBoard's SummaryWriter class, or a UserError naming the package to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("train.tensorboard needs the tensorboard package: pip install tensorboard "
                        "(or robustlab[tensorboard]); or set train.tensorboard=false") from None
    return SummaryWriter


def _summary_writer(folder: Path):
    return tensorboard_writer()(log_dir=str(folder))


def add_batch(sums: dict[str, Tensor], terms: dict[str, Tensor], counts: dict[str, Tensor], n: int,
              device: torch.device) -> None:
    """Add one batch: each term weighted by its n images, and the step's accuracy counts."""
    size = torch.tensor(float(n), device=device)
    batch = {k: v.detach().float() * size for k, v in terms.items()}
    batch["n"] = size
    batch.update(counts)
    for k, v in batch.items():
        sums[k] = sums.get(k, torch.zeros((), device=device)) + v


def running_accuracy(sums: dict[str, Tensor]) -> float:
    return sums["correct"].item() / sums["n"].item() if "correct" in sums else math.nan


def epoch_record(sums: dict[str, Tensor], dist: DistInfo) -> dict[str, float]:
    """Mean terms and accuracies of the epoch over every rank (train_<term>, train_acc,
    train_adv_acc) and its image count (`n`)."""
    keys = sorted(sums)
    totals = all_reduce_sum(torch.stack([sums[k] for k in keys]), dist)
    total = dict(zip(keys, totals.tolist()))
    count = max(1.0, total.pop("n"))
    correct = total.pop("correct", None)
    adv_correct, adv_n = total.pop("adv_correct", None), total.pop("adv_n", None)
    record = {f"train_{k}": v / count for k, v in total.items()}
    if correct is not None:
        record["train_acc"] = correct / count
    if adv_correct is not None:
        record["train_adv_acc"] = adv_correct / max(1.0, adv_n)
    record["n"] = count
    return record


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def epoch_line(record: dict, epochs: int) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}", f"loss {record.get('train_loss', math.nan):.4f}"]
    parts += [f"{k} {v:.4f}" for k, v in record.items() if k.endswith("_acc")]
    parts += [f"{record['images_per_s']:.0f} img/s", f"{record['time_s']:.1f} s"]
    return " | ".join(parts)
