"""The kernel-density detector of Feinman et al. (2017), as PDM uses it (Sec. 4): one Gaussian KDE
per class on penultimate embeddings of training samples; an input is scored by its density under
the class the model predicts, and a low density flags it as adversarial."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from robustlab.errors import UserError, check_ranges
from robustlab.io import atomic_torch_save, plain_torch_load

FORMAT = "robustlab-kde/1"
BANDWIDTHS = np.logspace(-2, 1.5, 15)  # the cross-validation grid, in embedding units


class KDEDetector:
    """Per-class Gaussian KDE (scikit-learn `KernelDensity`).

    Args:
        bandwidth: the kernel width; None picks it by 3-fold cross-validation of the held-out
            log-likelihood, summed over the classes, on the grid `BANDWIDTHS`.
        per_class: training embeddings kept per class (PDM: 1000).
        seed: which samples are kept when a class has more.
    """

    def __init__(self, bandwidth: float | None = None, per_class: int = 1000, seed: int = 0):
        check_ranges([(bandwidth is None or bandwidth > 0, "bandwidth", bandwidth, "> 0 or null"),
                      (per_class >= 2, "per_class", per_class, ">= 2")])
        self.bandwidth = bandwidth
        self.per_class = per_class
        self.seed = seed
        self.samples: dict[int, np.ndarray] = {}
        self._kdes: dict = {}

    @property
    def fitted(self) -> bool:
        return bool(self.samples)

    @property
    def dim(self) -> int:
        return next(iter(self.samples.values())).shape[1]

    def fit(self, embeddings: Tensor, labels: Tensor) -> KDEDetector:
        """Keep up to `per_class` embeddings of each class, choose the bandwidth, build the KDEs."""
        z, y = _as_numpy(embeddings, "embeddings"), _as_numpy(labels, "labels").astype(int)
        if z.ndim != 2 or y.shape != (len(z),):
            raise UserError(f"fit needs embeddings [N, D] and labels [N], got {z.shape} and {y.shape}")
        rng = np.random.default_rng(self.seed)
        self.samples = {}
        for c in np.unique(y):
            rows = np.flatnonzero(y == c)
            if len(rows) < 2:
                raise UserError(f"class {c} has {len(rows)} training embedding(s); the KDE needs >= 2")
            if len(rows) > self.per_class:
                rows = rng.choice(rows, self.per_class, replace=False)
            self.samples[int(c)] = z[rows]
        if self.bandwidth is None:
            self.bandwidth = self._cross_validated_bandwidth()
        self._build()
        return self

    def _cross_validated_bandwidth(self) -> float:
        from sklearn.model_selection import GridSearchCV
        from sklearn.neighbors import KernelDensity

        total = np.zeros(len(BANDWIDTHS))
        for points in self.samples.values():
            search = GridSearchCV(KernelDensity(kernel="gaussian"), {"bandwidth": BANDWIDTHS},
                                  cv=min(3, len(points)))
            search.fit(points)
            total += search.cv_results_["mean_test_score"]
        return float(BANDWIDTHS[int(np.argmax(total))])

    def _build(self) -> None:
        from sklearn.neighbors import KernelDensity

        self._kdes = {c: KernelDensity(kernel="gaussian", bandwidth=self.bandwidth).fit(points)
                      for c, points in self.samples.items()}

    def score(self, embeddings: Tensor, predicted: Tensor) -> np.ndarray:
        """log p(z | predicted class) per input, [N]: higher is more like the training data."""
        if not self.fitted:
            raise UserError("the detector is not fitted: call fit(embeddings, labels) or load a saved one")
        z, pred = _as_numpy(embeddings, "embeddings"), _as_numpy(predicted, "predicted").astype(int)
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise UserError(f"embeddings of size {z.shape[1:] if z.ndim == 2 else z.shape} do not match the "
                            f"detector's {self.dim}; score embeddings of the model it was fitted on")
        unknown = sorted(int(c) for c in set(np.unique(pred)) - set(self._kdes))
        if unknown:
            raise UserError(f"predicted class(es) {unknown} had no training embeddings in fit")
        out = np.empty(len(z))
        for c, kde in self._kdes.items():
            rows = pred == c
            if rows.any():
                out[rows] = kde.score_samples(z[rows])
        return out

    def log_density(self, embeddings: Tensor, cls: Tensor) -> Tensor:
        """The same log p(z | cls) as `score`, in torch and differentiable w.r.t. the embeddings
        (for the white-box C&W-wb attack): logsumexp_i -||z - s_i||^2 / (2 h^2) - log N_c
        - (D / 2) log(2 pi h^2), the Gaussian KDE of scikit-learn."""
        if not self.fitted:
            raise UserError("the detector is not fitted: call fit(embeddings, labels) or load a saved one")
        if embeddings.dim() != 2 or embeddings.shape[1] != self.dim:
            raise UserError(f"embeddings of shape {tuple(embeddings.shape)} do not match the detector's "
                            f"{self.dim}")
        h2 = self.bandwidth ** 2
        out = torch.empty(len(embeddings), dtype=embeddings.dtype, device=embeddings.device)
        for c in cls.unique().tolist():
            if c not in self.samples:
                raise UserError(f"class {c} had no training embeddings in fit")
            rows = cls == c
            points = torch.as_tensor(self.samples[c], dtype=embeddings.dtype, device=embeddings.device)
            sq = torch.cdist(embeddings[rows], points).pow(2)
            out[rows] = (torch.logsumexp(-sq / (2 * h2), 1) - np.log(len(points))
                         - 0.5 * self.dim * np.log(2 * np.pi * h2))
        return out

    def save(self, path: str | Path) -> Path:
        """Atomically, as plain tensors (loadable with weights_only=True)."""
        if not self.fitted:
            raise UserError("nothing to save: the detector is not fitted")
        return atomic_torch_save({"format": FORMAT, "bandwidth": self.bandwidth, "per_class": self.per_class,
                                  "seed": self.seed,
                                  "samples": {c: torch.from_numpy(p) for c, p in self.samples.items()}}, path)

    @classmethod
    def load(cls, path: str | Path) -> KDEDetector:
        state = plain_torch_load(path, "KDE detector", "fit and save it again")
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise UserError(f"{path} is not a robustlab KDE detector (format {FORMAT} expected)")
        detector = cls(state["bandwidth"], state["per_class"], state["seed"])
        detector.samples = {int(c): p.numpy() for c, p in state["samples"].items()}
        detector._build()
        return detector


def _as_numpy(value, name: str) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise UserError(f"{name} hold NaN or inf values")
    return array
