"""Run by tests/test_train.py under torchrun: train, then save this rank's weights."""

import os
import sys

import torch

from robustlab.config import load_config
from robustlab.experiment import train
from robustlab.train.distributed import end_distributed

if __name__ == "__main__":
    out = sys.argv[1]
    run = train(load_config(None, sys.argv[2:]))
    torch.save({"model": run.model.state_dict(), "global_step": run.global_step},
               os.path.join(out, f"rank{os.environ['RANK']}.pt"))
    end_distributed()
