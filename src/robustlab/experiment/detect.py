"""The detect job (PDM Sec. 4, Tables 1-4): fit the KDE detector of Feinman et al. (2017) on a
run's training embeddings, then measure detection under three threat models.

- gray-box: the attacker knows the model, not the detector (Table 2);
- white-box: C&W-wb, which also raises the KDE density of its examples (Carlini & Wagner 2017,
  "not easily detected"); reported as the distortion it needs to bring AUC to <= 0.5 (Table 3);
- black-box: C&W-wb on a proxy distilled from the model's outputs, scored by the model's
  detector (Table 4).

Like the other job modules of `experiment`, it joins every layer for one CLI command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from robustlab.data import check_eps, default_eps
from robustlab.errors import UserError
from robustlab.experiment.build import load_data, load_run
from robustlab.experiment.rundir import PROXY_RUN, RunDir, detector_path
from robustlab.models.modes import frozen_eval
from robustlab.report import Section
from robustlab.report.fmt import num, pct
from robustlab.train.fit import say

BIM_STEPS = 10  # PDM Table 5


def gray_box_attacks(eps: float, cw_steps: int = 10, cw_hc_steps: int = 1000) -> dict[str, tuple[str, dict]]:
    """PDM Table 2's attacks (Table 5's parameters); FGSM/BIM at eps / 2 and eps (PDM: 0.05 and
    0.1 on MNIST), BIM with 10 steps of 2.5 eps / 10, C&W with kappa 0 and C&W-hc with kappa 10."""
    half = eps / 2
    return {
        f"FGSM-{half:g}": ("fgsm", {"eps": half}),
        f"FGSM-{eps:g}": ("fgsm", {"eps": eps}),
        f"BIM-{half:g}": ("bim", {"eps": half, "steps": BIM_STEPS, "step_size": 2.5 * half / BIM_STEPS}),
        f"BIM-{eps:g}": ("bim", {"eps": eps, "steps": BIM_STEPS, "step_size": 2.5 * eps / BIM_STEPS}),
        "C&W": ("cw_l2", {"steps": cw_steps, "search_steps": 9, "kappa": 0.0}),
        "C&W-hc": ("cw_l2", {"steps": cw_hc_steps, "search_steps": 9, "kappa": 10.0}),
        "JSMA": ("jsma", {}),
    }


def _attacked(attack: Callable, model: nn.Module, x: Tensor, y: Tensor, batch: int) -> Tensor:
    return torch.cat([attack(model, x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)])


def _outputs(model: nn.Module, x: Tensor, batch: int = 500) -> tuple[Tensor, Tensor]:
    """(embeddings, predictions) in eval mode (restored after)."""
    embeddings, preds = [], []
    with frozen_eval(model), torch.no_grad():
        for i in range(0, len(x), batch):
            out = model.forward_all(x[i:i + batch])
            embeddings.append(out.embedding)
            preds.append(out.logits.argmax(1))
    return torch.cat(embeddings), torch.cat(preds)


def fit_detector(model: nn.Module, x: Tensor, y: Tensor, per_class: int = 1000,
                 bandwidth: float | None = None, seed: int = 0):
    """The KDE detector on the embeddings of up to `per_class` training images of each class."""
    from robustlab.detectors import KDEDetector

    embeddings, _ = _outputs(model, x)
    return KDEDetector(bandwidth, per_class, seed).fit(embeddings, y)


def detection_of(model: nn.Module, detector, x: Tensor, y: Tensor, x_adv: Tensor) -> dict:
    """AUC and detection rate at 5% false positives on equal numbers of clean and successful
    adversarial examples: the images the model gets right and the attack fools (PDM Sec. 4.2)."""
    from robustlab.detectors import detection_auc, detection_rate, roc

    z, pred = _outputs(model, x)
    z_adv, pred_adv = _outputs(model, x_adv)
    success = (pred == y) & (pred_adv != y)
    result = {"images": len(y), "successful": int(success.sum()),
              "success_rate": success.float().sum().item() / max(1, int((pred == y).sum()))}
    if success.sum() < 2:
        return {**result, "auc": None, "detection_rate": None}
    clean = detector.score(z[success], pred[success])
    adv = detector.score(z_adv[success], pred_adv[success])
    fpr, tpr = roc(clean, adv)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 100)).astype(int))
    distortion = (x_adv[success] - x[success]).flatten(1).norm(dim=1) / np.sqrt(x[0].numel())
    # per successful image (its index among the images): what a paired bootstrap resamples
    per_image = {"index": success.nonzero().flatten().tolist(), "clean": np.asarray(clean).tolist(),
                 "adversarial": np.asarray(adv).tolist(), "distortion": distortion.tolist()}
    return {**result, "auc": detection_auc(clean, adv), "detection_rate": detection_rate(clean, adv),
            "mean_distortion": distortion.mean().item(), "roc": [fpr[keep].tolist(), tpr[keep].tolist()],
            "per_image": per_image}


def kde_evading_cw(detector, tau: float, steps: int, search_steps: int = 3):
    """C&W-wb (Carlini & Wagner 2017, "not easily detected"): CW-L2 towards the most confusing
    class t, whose objective adds max(tau - log p(E(x') | t), 0), and whose points count only once
    they are classified t with a density of at least tau. The density is the target class's: the
    density of the class currently predicted would hold each point inside its own class.
    PDM Table 5: 3 binary-search steps, kappa 0."""
    from robustlab.attacks.cw import CWL2

    def penalty(model: nn.Module, x_adv: Tensor, y: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        log_p = detector.log_density(model.forward_all(x_adv).embedding, target)
        return (tau - log_p).clamp_min(0), log_p.detach() >= tau

    return CWL2(steps=steps, search_steps=search_steps, initial_const=1e-2, target="most_confusing",
                penalty=penalty)


def white_box(model: nn.Module, detector, x: Tensor, y: Tensor, steps: int, batch: int,
              quantiles=(0.5, 0.75, 0.9), log: Callable[[str], None] = say) -> dict:
    """The smallest density target tau (a quantile of the clean images' own scores) at which
    C&W-wb brings detection AUC to <= 0.5, and the distortion d it needed (PDM Table 3)."""
    z, pred = _outputs(model, x)
    clean_scores = detector.score(z, pred)
    tried = []
    for q in quantiles:
        tau = float(np.quantile(clean_scores, q))
        log(f"white-box C&W-wb, density target = clean quantile {q:g}")
        attack = kde_evading_cw(detector, tau, steps)
        x_adv = _attacked(attack, model, x, y, batch)
        result = {"quantile": q, "tau": tau, **detection_of(model, detector, x, y, x_adv)}
        result.pop("roc", None)
        tried.append(result)
        if result["auc"] is not None and result["auc"] <= 0.5:
            break
    return {"tried": tried, "final": tried[-1]}


def distilled_proxy(run: Path, out_dir: Path, epochs: int, log: Callable[[str], None]) -> nn.Module:
    """A copy of the run's architecture trained on its training images to match its outputs
    (recipe `distill`, the run as the frozen teacher); cached in out_dir/proxy, resumable."""
    from robustlab.config import config_from_dict
    from robustlab.experiment.training import train

    loaded = load_run(run)
    cfg = config_from_dict(loaded.cfg.to_dict())
    cfg.name, cfg.out_dir, cfg.seed = PROXY_RUN, str(out_dir), loaded.cfg.seed + 7
    cfg.train.epochs, cfg.train.monitor_images = epochs, 0
    cfg.defense = type(cfg.defense)(recipe="distill", teacher=str(loaded.checkpoint))
    resume = RunDir(cfg.run_dir).checkpoint("last").is_file()
    return train(cfg, resume=resume, force=not resume, log=log).model.eval()


@dataclass
class Setting:
    """What each threat model's measurement reads: the model, its detector, the test images."""

    model: nn.Module
    detector: object
    x: Tensor
    y: Tensor
    train_x: Tensor
    train_y: Tensor
    eps: float
    name: str  # the run's config name
    run: Path
    out_dir: Path
    seed: int
    options: dict
    log: Callable[[str], None]


def detect(path: str | Path, *, which: str = "last", images: int = 200, per_class: int = 1000,
           bandwidth: float | None = None, threats: tuple[str, ...] = ("gray", "white", "black"),
           eps: float | None = None, cw_hc_steps: int = 1000, wb_steps: int = 1000, proxy_epochs: int = 2,
           batch: int = 100, out: str | None = None, data_dir: str | None = None,
           log: Callable[[str], None] = say) -> dict:
    """PDM Tables 1-4 and Fig. 2 for one run: clean accuracy, detection AUC under the gray-box
    attacks, the white-box distortion, the black-box AUC, and the embeddings' clustering."""
    from robustlab.analysis import embedding_study, plots
    from robustlab.attacks import ATTACKS
    from robustlab.report import write_sections_page

    unknown = sorted(set(threats) - set(THREATS))
    if unknown:
        raise UserError(f"unknown threat model(s) {', '.join(unknown)}; choose {', '.join(THREATS)}")
    options = {"images": images, "per_class": per_class, "wb_steps": wb_steps,
               "cw_hc_steps": cw_hc_steps, "proxy_epochs": proxy_epochs, "batch_size": batch}
    for key, value in options.items():
        if value < 1:
            raise UserError(f"--{key.replace('_', '-')}={value} is out of range: expected >= 1")
    path = Path(path)
    loaded = load_run(path, which, data_dir)
    cfg = loaded.cfg
    cfg.data.test_limit = cfg.data.train_limit = None
    ds = load_data(cfg)
    eps = check_eps(eps if eps is not None else default_eps(ds.name), "--eps")
    out_dir = Path(out) if out else RunDir.of(path, loaded.checkpoint).detect
    model = loaded.model.eval()
    train_x, train_y = ds.train.images.float().div(255), ds.train.labels
    detector = _detector(model, train_x, train_y, per_class, bandwidth, cfg.seed, out_dir, log)
    s = Setting(model, detector, ds.test.images[:images].float().div(255), ds.test.labels[:images],
                train_x, train_y, eps, cfg.name, RunDir.of_checkpoint(loaded.checkpoint).root, out_dir,
                cfg.seed, options, log)
    _, all_pred = _outputs(model, ds.test.images.float().div(255))
    numbers: dict = {"run": cfg.name, "checkpoint": str(loaded.checkpoint), "dataset": ds.name,
                     "recipe": cfg.defense.recipe, "eps": eps, "images": images,
                     "clean_accuracy": (all_pred == ds.test.labels).float().mean().item(),
                     "bandwidth": detector.bandwidth, "per_class": per_class}
    sections = [Section("Clean accuracy (PDM Table 1)", f"{100 * numbers['clean_accuracy']:.2f}% on the "
                        f"{len(ds.test)} test images. KDE bandwidth {detector.bandwidth:.3g} "
                        f"({'given' if bandwidth else 'cross-validated'}), {per_class} training "
                        "embeddings per class.")]
    for name, (key, measure) in THREATS.items():
        if name in threats:
            numbers[key], section = measure(s)
            sections.append(section)
    log("embeddings: t-SNE and Davies-Bouldin")
    study = embedding_study(model, s.x, s.y, ATTACKS.build("fgsm", eps=eps), ds.num_classes)
    numbers["davies_bouldin"] = study["davies_bouldin_clean"]
    sections.append(Section(
        "Embedding clusters (PDM Fig. 2)", f"t-SNE of the test embeddings with their FGSM examples "
        f"(crosses); Davies-Bouldin index {num(study['davies_bouldin_clean'])} (lower: tighter, better "
        "separated classes).", figure="tsne.png", png=plots.tsne_png({cfg.name: study}, ds.class_names)))
    files = write_sections_page(f"Detection report: {cfg.name}", sections, numbers, out_dir, stem="detect")
    return {"files": {k: str(v) for k, v in files.items()}, **numbers}


def _detector(model, train_x, train_y, per_class: int, bandwidth: float | None, seed: int, out_dir: Path,
              log: Callable[[str], None]):
    """The run's KDE detector: the saved one when its settings match, else fitted and saved."""
    from robustlab.detectors import KDEDetector

    detector_file = detector_path(out_dir)
    if detector_file.is_file():
        detector = KDEDetector.load(detector_file)
        if detector.per_class == per_class and (bandwidth is None or detector.bandwidth == bandwidth):
            return detector
    log(f"fitting the KDE detector on {per_class} training embeddings per class")
    detector = fit_detector(model, train_x, train_y, per_class, bandwidth, seed)
    detector.save(detector_file)
    return detector


def _gray(s: Setting) -> tuple[dict, Section]:
    from robustlab.analysis import plots
    from robustlab.attacks import ATTACKS

    gray = {}
    for label, (name, params) in gray_box_attacks(s.eps, cw_hc_steps=s.options["cw_hc_steps"]).items():
        s.log(f"gray-box {label} on {len(s.y)} images")
        x_adv = _attacked(ATTACKS.build(name, **params), s.model, s.x, s.y, s.options["batch_size"])
        gray[label] = detection_of(s.model, s.detector, s.x, s.y, x_adv)
    return gray, Section(
        "Gray-box detection (PDM Table 2)", "The attacker knows the model, not the detector. AUC "
        "on equal numbers of clean and successful adversarial examples (the images the model gets "
        "right and the attack fools), scored by the KDE density under the predicted class.",
        head=["attack", "successful", "AUC", "detected at 5% FPR", "mean distortion d"],
        rows=[[k, str(v["successful"]), num(v["auc"]), pct(v["detection_rate"], 1),
               num(v.get("mean_distortion"))] for k, v in gray.items()],
        figure="roc.png", png=plots.roc_png({k: tuple(map(np.array, v["roc"])) for k, v in gray.items()
                                             if v.get("roc")}, f"{s.name}: gray-box ROC"))


def _white(s: Setting) -> tuple[dict, Section]:
    white = white_box(s.model, s.detector, s.x, s.y, s.options["wb_steps"], s.options["batch_size"],
                      log=s.log)
    return white, Section(
        "White-box distortion (PDM Table 3)", "C&W-wb also raises the KDE density of its examples "
        "to a target tau (a quantile of the clean images' densities), tried from the median up "
        "until detection AUC <= 0.5; d = mean ||x' - x||_2 / sqrt(pixels) of the successful "
        "examples (higher: the defense forces more distortion).",
        head=["tau quantile", "successful", "AUC", "d"],
        rows=[[f"{t['quantile']:g}", str(t["successful"]), num(t["auc"]), num(t.get("mean_distortion"))]
              for t in white["tried"]])


def _black(s: Setting) -> tuple[dict, Section]:
    epochs = s.options["proxy_epochs"]
    s.log(f"black-box: distilling a proxy for {epochs} epochs")
    proxy = distilled_proxy(s.run, s.out_dir, epochs, s.log)
    proxy_detector = fit_detector(proxy, s.train_x, s.train_y, s.options["per_class"], None, s.seed)
    z, pred = _outputs(proxy, s.x)
    tau = float(np.quantile(proxy_detector.score(z, pred), 0.5))
    attack = kde_evading_cw(proxy_detector, tau, s.options["wb_steps"])
    s.log("black-box: C&W-wb on the proxy, scored on the target")
    x_adv = _attacked(attack, proxy, s.x, s.y, s.options["batch_size"])
    black = detection_of(s.model, s.detector, s.x, s.y, x_adv)
    black.pop("roc", None)
    return black, Section(
        "Black-box detection (PDM Table 4)", "C&W-wb against a proxy distilled from the model's "
        "outputs (same architecture, the proxy's own KDE); the examples that fool the target are "
        "scored by the target's detector.", head=["successful on the target", "AUC"],
        rows=[[str(black["successful"]), num(black["auc"])]])


# `--threats NAME`: PDM's three threat models (App. D), each with the key of its numbers.
THREATS: dict[str, tuple[str, Callable[[Setting], tuple[dict, Section]]]] = {
    "gray": ("gray_box", _gray), "white": ("white_box", _white), "black": ("black_box", _black),
}
