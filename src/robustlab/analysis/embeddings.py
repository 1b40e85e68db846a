"""Penultimate embeddings: t-SNE with adversarial examples overlaid (AGKD-BML Fig. 3, PDM Fig. 2),
the Davies-Bouldin index of the classes, and original vs adversarial labels (PDM Fig. 1b)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from robustlab.errors import UserError
from robustlab.models.modes import frozen_eval


def embeddings(model: nn.Module, x: Tensor, batch_size: int = 500) -> Tensor:
    """E(x), the penultimate embedding [N, D] (eval mode, restored after; no graph)."""
    with frozen_eval(model), torch.no_grad():
        return torch.cat([model.embed(model.features(x[i:i + batch_size]))
                          for i in range(0, len(x), batch_size)])


def tsne(points: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-d t-SNE (scikit-learn) of [N, D] points; perplexity is capped below N."""
    from sklearn.manifold import TSNE

    if len(points) < 3:
        raise UserError(f"t-SNE needs at least 3 points, got {len(points)}")
    perplexity = min(perplexity, (len(points) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)


def label_transitions(y: Tensor, pred_adv: Tensor, num_classes: int) -> np.ndarray:
    """[K, K] counts: row = original label, column = the label the adversarial example gets."""
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.long)
    matrix.index_put_((y.cpu(), pred_adv.cpu()), torch.ones(len(y), dtype=torch.long), accumulate=True)
    return matrix.numpy()


def embedding_study(model: nn.Module, x: Tensor, y: Tensor, attack: Callable, num_classes: int,
                    overlay_classes: Sequence[int] | None = None, seed: int = 0) -> dict:
    """Clean embeddings by class with the adversarial embeddings of `overlay_classes` (default:
    all) in one t-SNE; the Davies-Bouldin index of the clean classes and of the adversarial
    examples under their true labels (lower: tighter, better separated clusters); the label
    transition matrix."""
    from sklearn.metrics import davies_bouldin_score

    x_adv = attack(model, x, y)  # attacks run in eval mode and restore the caller's
    clean, adv = embeddings(model, x), embeddings(model, x_adv)
    with frozen_eval(model), torch.no_grad():
        pred_adv = model.head(adv).argmax(1)
    chosen = torch.ones_like(y, dtype=torch.bool) if overlay_classes is None else torch.isin(
        y, torch.tensor(list(overlay_classes)))
    points = tsne(torch.cat([clean, adv[chosen]]).numpy(), seed=seed)
    labels = y.numpy()
    # Davies-Bouldin needs 2 <= classes < images (a class of one image has no spread)
    several = 1 < len(np.unique(labels)) < len(labels)
    return {
        "tsne_clean": points[: len(y)], "tsne_adv": points[len(y):],
        "labels": labels, "adv_labels": y[chosen].numpy(),
        "davies_bouldin_clean": float(davies_bouldin_score(clean.numpy(), labels)) if several else None,
        "davies_bouldin_adv": float(davies_bouldin_score(adv.numpy(), labels)) if several else None,
        "transitions": label_transitions(y, pred_adv, num_classes),
        "adv_accuracy": (pred_adv == y).float().mean().item(),
    }
