"""Draw a random sample of a given class, for a whole batch of classes at once.

AGKD-BML's bidirectional metric loss, PDM and the cascade defense pair each input with a sample
of another (or the same) class; this index makes that one gather per batch.
"""

from __future__ import annotations

import torch

from robustlab.data.batches import Split
from robustlab.errors import UserError


class ClassIndex:
    """Sample indices grouped by class: ``order[starts[c] : starts[c] + counts[c]]`` are class c."""

    def __init__(self, split: Split):
        self.split = split
        self.order = torch.sort(split.labels, stable=True).indices
        self.counts = torch.bincount(split.labels)
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    def indices_of_classes(self, labels: torch.Tensor,
                           generator: torch.Generator | None = None) -> torch.Tensor:
        """For each label, the split index (on the CPU) of a random sample of that class."""
        labels = labels.detach().to("cpu", torch.int64)
        num_known = len(self.counts)
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_known
                               or (self.counts[labels.clamp(0, num_known - 1)] == 0).any()):
            present = (self.counts > 0).nonzero().flatten().tolist()
            missing = sorted({int(c) for c in labels
                              if not 0 <= c < num_known or self.counts[c] == 0})
            raise UserError(f"no sample of class {missing} in this split "
                            f"(classes present: {present})")
        device = generator.device if generator is not None else torch.device("cpu")
        # float64: floor(u * count) stays below count for every count a split can hold
        u = torch.rand(labels.shape, generator=generator, device=device, dtype=torch.float64).cpu()
        counts = self.counts[labels]
        offset = torch.minimum((u * counts).long(), counts - 1)
        return self.order[self.starts[labels] + offset]

    def sample_of_classes(self, labels: torch.Tensor,
                          generator: torch.Generator | None = None) -> torch.Tensor:
        """Random samples of the given classes: float [B, C, H, W] in [0, 1], on labels.device."""
        index = self.indices_of_classes(labels, generator)
        return self.split.images[index].to(labels.device).float().div_(255)
