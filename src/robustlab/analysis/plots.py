"""Figures of the analyses as PNG bytes (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return buffer.getvalue()


def _image(ax, x: np.ndarray, heat: np.ndarray | None = None) -> None:
    """A [C, H, W] image in [0, 1], with a heat map overlaid (scaled to its own max)."""
    ax.imshow(x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=1)
    if heat is not None:
        ax.imshow(heat / max(float(heat.max()), 1e-12), cmap="jet", alpha=0.45, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def attention_grid_png(grids: Mapping[str, Mapping], class_names: Sequence[str]) -> bytes:
    """Rows: images (of each run in turn); columns: clean image, its channel-mean map, Grad-CAM
    of the true and of the predicted class, then the same for the adversarial image."""
    plt = _plt()
    columns = [("x", None, "clean"), ("x", "mean_clean", "channel mean"),
               ("x", "cam_true_clean", "Grad-CAM true"), ("x", "cam_pred_clean", "Grad-CAM pred"),
               ("x_adv", None, "adversarial"), ("x_adv", "mean_adv", "channel mean"),
               ("x_adv", "cam_true_adv", "Grad-CAM true"), ("x_adv", "cam_pred_adv", "Grad-CAM pred")]
    rows = [(name, i) for name, grid in grids.items() for i in range(len(grid["y"]))]
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(1.6 * len(columns), 1.7 * len(rows)),
                             squeeze=False)
    for r, (name, i) in enumerate(rows):
        grid = grids[name]
        for c, (image, heat, title) in enumerate(columns):
            ax = axes[r, c]
            _image(ax, grid[image][i].numpy(), None if heat is None else grid[heat][i].numpy())
            if r == 0:
                ax.set_title(title, fontsize=8)
            if c in (0, 4):
                pred = grid["pred_clean" if c == 0 else "pred_adv"][i]
                ax.set_xlabel(f"pred {class_names[int(pred)]}", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"{name}\n{class_names[int(grid['y'][i])]}", fontsize=7)
    return _png(fig)


def trace_png(traces: Mapping[str, Mapping], class_names: Sequence[str]) -> bytes:
    """Grad-CAM of the true class over an attack's iterations: one row per image and run."""
    plt = _plt()
    rows = [(name, i) for name, trace in traces.items() for i in range(len(trace["y"]))]
    steps = next(iter(traces.values()))["images"].shape[1]
    fig, axes = plt.subplots(len(rows), steps, figsize=(1.4 * steps, 1.6 * len(rows)), squeeze=False)
    for r, (name, i) in enumerate(rows):
        trace = traces[name]
        for s in range(steps):
            ax = axes[r, s]
            _image(ax, trace["images"][i, s].numpy(), trace["cam"][i, s].numpy())
            ax.set_xlabel(class_names[int(trace["pred"][i, s])], fontsize=6)
            if r == 0:
                ax.set_title(f"step {s}", fontsize=8)
            if s == 0:
                ax.set_ylabel(f"{name}\n{class_names[int(trace['y'][i])]}", fontsize=7)
    return _png(fig)


def tsne_png(studies: Mapping[str, Mapping], class_names: Sequence[str]) -> bytes:
    """Clean embeddings coloured by class (dots), adversarial ones of the chosen classes as
    crosses in the colour of their true class; one panel per run."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(studies), figsize=(5 * len(studies), 4.6), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (name, s) in zip(axes[0], studies.items()):
        for c in np.unique(s["labels"]):
            pts = s["tsne_clean"][s["labels"] == c]
            ax.scatter(pts[:, 0], pts[:, 1], s=5, color=cmap(int(c) % 10), label=class_names[int(c)])
        ax.scatter(s["tsne_adv"][:, 0], s["tsne_adv"][:, 1], s=14, marker="x", linewidths=0.8,
                   c=[cmap(int(c) % 10) for c in s["adv_labels"]])
        db = s["davies_bouldin_clean"]
        ax.set_title(f"{name}: DB clean {db:.2f}" if db is not None else name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].legend(fontsize=6, markerscale=2, loc="best")
    return _png(fig)


def transitions_png(matrices: Mapping[str, np.ndarray], class_names: Sequence[str]) -> bytes:
    """Original label (rows) vs the adversarial example's label (columns), counts."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.4 * len(matrices), 4), squeeze=False)
    for ax, (name, m) in zip(axes[0], matrices.items()):
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=6)
        ticks = range(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=90, fontsize=6)
        ax.set_yticks(ticks, class_names, fontsize=6)
        ax.set_xlabel("adversarial label", fontsize=8)
        ax.set_ylabel("original label", fontsize=8)
        ax.set_title(name, fontsize=9)
    return _png(fig)


def landscape_png(landscapes: Mapping[str, Mapping]) -> bytes:
    """Loss surfaces side by side on a shared colour scale (ATAT Fig. 7)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(landscapes), figsize=(4.2 * len(landscapes), 3.8), squeeze=False)
    top = max(float(np.max(s["losses"])) for s in landscapes.values())
    for ax, (name, s) in zip(axes[0], landscapes.items()):
        a = s["alphas"]
        shown = ax.contourf(a, a, s["losses"].T, levels=20, vmin=0, vmax=top, cmap="viridis")
        ax.set_xlabel("gradient-sign direction", fontsize=8)
        ax.set_ylabel("Rademacher direction", fontsize=8)
        ax.set_title(f"{name}: loss {np.min(s['losses']):.2f} .. {np.max(s['losses']):.2f}", fontsize=9)
    fig.colorbar(shown, ax=axes[0].tolist(), shrink=0.8)
    return _png(fig)


def roc_png(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str) -> bytes:
    """ROC curves (false-positive rate, detection rate), one per attack, with the chance line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, (fpr, tpr) in curves.items():
        ax.plot(fpr, tpr, label=name, linewidth=1.2)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("false-positive rate (clean flagged)", fontsize=8)
    ax.set_ylabel("detection rate (adversarial flagged)", fontsize=8)
    ax.set_title(title, fontsize=9)
    if curves:  # no attack had two successful examples: the chance line alone
        ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def _bands(ax, eps: np.ndarray, mean, std, label: str, scale: float = 1.0) -> None:
    mean, std = np.asarray(mean), np.asarray(std) * scale
    (line,) = ax.plot(eps, mean, label=label, linewidth=1.2)
    ax.fill_between(eps, mean - std, mean + std, color=line.get_color(), alpha=0.2)


def softmax_png(curves: Mapping[str, Mapping[str, Mapping]]) -> bytes:
    """The Cascade paper's Fig. 4 / 6: a row per run, a column per direction; the true class's
    logit and the mean false-class logit vs eps (x 255), +-1 std shaded."""
    plt = _plt()
    runs = list(curves)
    methods = list(next(iter(curves.values())))
    fig, axes = plt.subplots(len(runs), len(methods), figsize=(3.6 * len(methods), 2.8 * len(runs)),
                             squeeze=False, sharey="row")
    for r, run in enumerate(runs):
        for c, method in enumerate(methods):
            s, ax = curves[run][method], axes[r, c]
            eps = np.asarray(s["eps"]) * 255
            _bands(ax, eps, s["true_mean"], s["true_std"], "true class")
            _bands(ax, eps, s["false_mean"], s["false_std"], "false classes (mean)")
            ax.set_title(f"{run}: {method}", fontsize=9)
            ax.set_xlabel("eps (x 255)", fontsize=8)
            if c == 0:
                ax.set_ylabel("argument to the softmax", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def correlation_png(curves: Mapping[str, Mapping]) -> bytes:
    """The Cascade paper's Fig. 5: per run, the mean Pearson correlation between the input
    gradients of each image pair vs eps (x 255), +-0.5 std shaded as in the paper."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False, sharey=True)
    for ax, (run, s) in zip(axes[0], curves.items()):
        eps = np.asarray(s["eps"]) * 255
        for pair, values in s.items():
            if pair != "eps":
                _bands(ax, eps, values["mean"], values["std"], pair, scale=0.5)
        ax.axhline(0, color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(run, fontsize=9)
        ax.set_xlabel("eps (x 255)", fontsize=8)
    axes[0, 0].set_ylabel("gradient correlation", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    return _png(fig)
