"""The explain job: what one or more trained runs look at, as figures and tables.

It joins `analysis` (the numbers) and `report` (the page) for `robustlab explain`; like the
other job modules of `experiment`, it may know every layer below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from robustlab.data import check_eps, default_eps
from robustlab.errors import UserError
from robustlab.experiment.build import load_data, load_run
from robustlab.experiment.rundir import RunDir
from robustlab.experiment.training import saved_teacher
from robustlab.report import Section
from robustlab.report.fmt import num, pct
from robustlab.train.fit import say


@dataclass
class Scene:
    """What every analysis reads: the models, the test images, the attack and the options."""

    models: dict
    grid_models: dict  # each run, then its teacher when it had one
    x_all: Tensor
    y_all: Tensor
    eps: float
    attack: str
    classes: list
    num_classes: int
    options: dict
    numbers: dict
    log: Callable[[str], None]

    @property
    def chosen(self):
        from robustlab.attacks import ATTACKS

        return ATTACKS.build(self.attack, eps=self.eps)

    def first(self, n: int) -> tuple[Tensor, Tensor]:
        return self.x_all[:n], self.y_all[:n]

    @property
    def grid(self) -> list[float]:
        """The Cascade analyses' eps grid: 11 points from 0 to eps."""
        from robustlab.analysis import eps_grid

        return eps_grid(self.eps, 11)


def explain(paths: list[str | Path], *, which: str = "last", what: tuple[str, ...] = ("grid", "trace",
            "study", "embeddings", "landscape"), images: int = 6, study_images: int = 500,
            embed_images: int = 1000, attack: str = "pgd", eps: float | None = None,
            trace_steps: int = 10, overlay_classes: list[int] | None = None, surface_images: int = 128,
            transfer_images: int = 1000, out: str | None = None,
            data_dir: str | None = None, log: Callable[[str], None] = say) -> dict:
    """What one or more runs look at: attention grids (with the teacher's, when the run had one),
    attention over an attack's iterations, AAD's attention studies, t-SNE / Davies-Bouldin /
    label transitions of the embeddings, and loss landscapes; on request the Cascade paper's
    analyses (transfer, softmax, correlation, leaking); PNGs plus explain.html/md/json."""
    from robustlab.report import write_sections_page

    unknown = sorted(set(what) - set(ANALYSES))
    if unknown:
        raise UserError(f"unknown analysis {', '.join(unknown)}; choose from {', '.join(ANALYSES)}")
    options = {"images": images, "study_images": study_images, "embed_images": embed_images,
               "trace_steps": trace_steps, "surface_images": surface_images,
               "transfer_images": transfer_images}
    for key, value in options.items():
        if value < 1:
            raise UserError(f"--{key.replace('_', '-')}={value} is out of range: expected >= 1")
    if not paths:
        raise UserError("explain needs at least one run")
    if "transfer" in what and len(paths) < 2:
        raise UserError("--what transfer needs at least two runs (each is a source and a target)")
    scene, loaded = _scene(paths, which, data_dir, eps, attack,
                           {**options, "overlay_classes": overlay_classes}, log)
    sections = [section for name, analysis in ANALYSES.items() if name in what
                for section in analysis(scene)]
    names = list(scene.models)
    out_dir = Path(out) if out else RunDir.of(paths[0], loaded[0].checkpoint).explain
    files = write_sections_page(f"What {', '.join(names)} look{'s' if len(names) == 1 else ''} at",
                                sections, scene.numbers, out_dir)
    return {"files": {k: str(v) for k, v in files.items()}, **scene.numbers}


def _scene(paths, which, data_dir, eps, attack, options, log) -> tuple[Scene, list]:
    """The runs loaded (each name once: the same run twice gets its checkpoint as a suffix), on
    their common data set."""
    loaded = [load_run(p, which, data_dir) for p in paths]
    names: list[str] = []
    for one in loaded:
        name = one.cfg.name
        names.append(name if name not in names else f"{name} ({one.checkpoint.stem})")
    cfg = loaded[0].cfg
    datasets = {one.cfg.data.name for one in loaded}
    if len(datasets) > 1:
        raise UserError(f"runs on different data sets ({', '.join(sorted(datasets))}) cannot be shown side "
                        "by side; explain them one at a time")
    cfg.data.test_limit = None
    ds = load_data(cfg)
    eps = check_eps(eps if eps is not None else default_eps(ds.name), "--eps")
    models = {name: one.model.eval() for name, one in zip(names, loaded)}
    grid_models = {}
    for name, one in zip(names, loaded):
        grid_models[name] = models[name]
        teacher = saved_teacher(one.cfg)
        if teacher is not None:
            grid_models[f"{name} teacher"] = teacher.eval()
    numbers: dict = {"runs": names, "checkpoints": [str(one.checkpoint) for one in loaded],
                     "dataset": ds.name, "eps": eps, "attack": attack}
    scene = Scene(models, grid_models, ds.test.images.float().div(255), ds.test.labels, eps, attack,
                  ds.class_names, ds.num_classes, options, numbers, log)
    return scene, loaded


def _grid(s: Scene) -> list[Section]:
    from robustlab.analysis import attention_grid, plots

    images = s.options["images"]
    s.log(f"attention grid: {images} images, {len(s.grid_models)} models")
    grids = {name: attention_grid(m, *s.first(images), s.chosen) for name, m in s.grid_models.items()}
    return [Section(
        "Attention maps", f"The first {images} test images and their {s.attack} examples at eps "
        f"{s.eps:g}; heat maps at input size: the channel mean of the last conv features (AGKD-BML), "
        "Grad-CAM of the true and of the predicted class (ATAT, AAD).", figure="attention_grid.png",
        png=plots.attention_grid_png(grids, s.classes))]


def _trace(s: Scene) -> list[Section]:
    from robustlab.analysis import attention_trace, plots
    from robustlab.attacks import ATTACKS

    steps = s.options["trace_steps"]
    s.log(f"attention over {steps} PGD iterations")
    pgd = ATTACKS.build("pgd", eps=s.eps, steps=steps)
    x, y = s.first(min(s.options["images"], 4))
    traces = {name: attention_trace(m, x, y, pgd) for name, m in s.models.items()}
    return [Section(
        "Attention over the iterations of PGD", f"Grad-CAM of the true class after each of "
        f"{steps} PGD steps (step {pgd.alpha:.4g}); under each image its prediction.",
        figure="attention_trace.png", png=plots.trace_png(traces, s.classes))]


def _study(s: Scene) -> list[Section]:
    from robustlab.analysis import object_iou_study, shift_iou_study
    from robustlab.attacks import ATTACKS

    step_ll = ATTACKS.build("step_ll", eps=s.eps)
    n = s.options["study_images"]
    rows1, rows3, study = [], [], {}
    for name, m in s.models.items():
        s.log(f"attention study (AAD Sec. 3) on {n} images: {name}")
        x, y = s.first(n)
        first, third = object_iou_study(m, x, y, step_ll), shift_iou_study(m, x, y, step_ll)
        study[name] = {"object_iou": first, "shift_iou": third}
        t1, t2 = first["table1"], first["table2"]
        rows1.append([name, *[pct(t1[g]["percentage"], 1) for g in ("succeed", "fail")],
                      *[num(t1[g]["iou"]) for g in ("succeed", "fail")],
                      *[pct(t2[g]["percentage"], 1) for g in ("succeed", "fail")],
                      *[num(t2[g]["confidence"]) for g in ("succeed", "fail")]])
        for k, row in third["rows"].items():
            rows3.append([name, k, num(row["succeed"]), num(row["fail"])])
    s.numbers["attention_study"] = study
    return [Section(
        "Attention and object area (AAD Tables 1-2)", "Images the model classifies correctly, "
        f"attacked with step_ll at eps {s.eps:g}. IoU between the attention area (the Grad-CAM "
        "pixels of the true class, as many as the object has) and the object (pixels brighter "
        "than 0.1), for images the attack fools (succeed) and those it does not (fail); then, "
        "among images with IoU < 0.5, each group's share and clean confidence.",
        head=["run", "% succeed", "% fail", "IoU succeed", "IoU fail", "IoU<0.5: % succeed",
              "% fail", "confidence succeed", "confidence fail"], rows=rows1), Section(
        "Clean vs adversarial attention (AAD Table 3)", "IoU between the top-k Grad-CAM cells "
        "of the clean and of the step_ll image (k capped at the number of cells of the last "
        "feature map).", head=["run", "cells k", "IoU succeed", "IoU fail"], rows=rows3)]


def _embeddings(s: Scene) -> list[Section]:
    from robustlab.analysis import embedding_study, plots

    n, overlay = s.options["embed_images"], s.options["overlay_classes"]
    studies = {}
    for name, m in s.models.items():
        s.log(f"t-SNE of {n} embeddings (and their {s.attack} examples): {name}")
        studies[name] = embedding_study(m, *s.first(n), s.chosen, s.num_classes, overlay)
    s.numbers["embeddings"] = {name: {k: st[k] for k in ("davies_bouldin_clean", "davies_bouldin_adv",
                                                          "adv_accuracy")} | {
        "transitions": st["transitions"].tolist()} for name, st in studies.items()}
    return [Section(
        "Embeddings (AGKD-BML Fig. 3, PDM Fig. 2)", f"t-SNE of the penultimate embeddings of "
        f"{n} test images by class (dots) with their {s.attack} examples "
        f"{'of classes ' + str(overlay) if overlay else ''} as crosses in the colour "
        "of their true class. Davies-Bouldin index (lower: tighter, better separated classes).",
        head=["run", "DB clean", "DB adversarial (true labels)", "accuracy under attack"],
        rows=[[name, num(st["davies_bouldin_clean"]), num(st["davies_bouldin_adv"]),
               pct(st["adv_accuracy"], 1)] for name, st in studies.items()],
        figure="tsne.png", png=plots.tsne_png(studies, s.classes)),
        Section("Original vs adversarial labels (PDM Fig. 1b)", "Counts of each (original, adversarial) "
                "label pair.", figure="transitions.png",
                png=plots.transitions_png({n: st["transitions"] for n, st in studies.items()}, s.classes))]


def _landscape(s: Scene) -> list[Section]:
    from robustlab.analysis import loss_landscape, plots

    images = s.options["images"]
    s.log("loss landscapes")
    lands = {name: loss_landscape(m, *s.first(images), radius=s.eps) for name, m in s.models.items()}
    s.numbers["landscape"] = {n: {"min": float(st["losses"].min()), "max": float(st["losses"].max())}
                              for n, st in lands.items()}
    return [Section(
        "Loss landscape (ATAT Fig. 7)", f"Mean CE of the first {images} test images at x + a "
        f"sign(grad) + b r (r Rademacher), a, b in [-{s.eps:g}, {s.eps:g}].",
        figure="landscape.png", png=plots.landscape_png(lands))]


def _transfer(s: Scene) -> list[Section]:
    from robustlab.analysis import transfer_matrix
    from robustlab.attacks import ATTACKS

    n = s.options["transfer_images"]
    attacks = {name: ATTACKS.build(name, eps=s.eps) for name in ("step_fgsm", "iter_ll", "iter_fgsm")}
    table = transfer_matrix(s.models, *s.first(n), attacks, log=s.log)
    s.numbers["transfer"] = table
    names = list(s.models)
    return [Section(
        "Transfer between networks (Cascade Table 4)", f"Accuracy of each target (row) on the "
        f"examples each source (column) makes, on the first {n} test images at eps "
        f"{s.eps:g}; the diagonal is white-box. The paper pairs networks of different seeds.",
        head=["attack", "target \\ source", *names],
        rows=[[label, target, *[pct(table[label][target][source], 1) for source in names]]
              for label in table for target in names])]


def _softmax(s: Scene) -> list[Section]:
    from robustlab.analysis import plots, softmax_arguments
    from robustlab.analysis.error_surface import DIRECTIONS

    x, y = s.first(s.options["surface_images"])
    s.log(f"softmax arguments vs eps on {len(x)} images")
    curves = {name: {d: softmax_arguments(model, x, y, s.grid, d) for d in DIRECTIONS}
              for name, model in s.models.items()}
    s.numbers["softmax_arguments"] = curves
    return [Section(
        "Arguments to the softmax vs eps (Cascade Fig. 4, 6)", f"Mean over the first {len(x)} test "
        "images of the true class's logit and of the false classes' mean logit along each "
        "one-step direction, +-1 std shaded.", figure="softmax.png", png=plots.softmax_png(curves))]


def _correlation(s: Scene) -> list[Section]:
    from robustlab.analysis import gradient_correlation, plots

    x, y = s.first(s.options["surface_images"])
    s.log(f"gradient correlations vs eps on {len(x)} images")
    curves = {name: gradient_correlation(model, x, y, s.grid) for name, model in s.models.items()}
    s.numbers["gradient_correlation"] = curves
    pairs = [k for k in next(iter(curves.values())) if k != "eps"]
    return [Section(
        "Correlation of input gradients (Cascade Fig. 5)", f"Pearson correlation between the "
        f"gradients of CE(., y) w.r.t. two images, mean over the first {len(x)} test images "
        f"(+-0.5 std shaded); the table gives it at eps {s.eps:g}.",
        head=["run", *pairs],
        rows=[[n, *[num(c[p]["mean"][-1]) for p in pairs]] for n, c in curves.items()],
        figure="correlation.png", png=plots.correlation_png(curves))]


def _leaking(s: Scene) -> list[Section]:
    from robustlab.analysis import label_leaking

    n = s.options["transfer_images"]
    leaks = {name: label_leaking(model, *s.first(n), s.grid) for name, model in s.models.items()}
    s.numbers["label_leaking"] = leaks
    return [Section(
        "Label leaking (Cascade Sec. 4.2)", f"Accuracy on step_FGSM images (which use the true "
        f"label) of the first {n} test images, by eps x 255; a model leaks labels "
        "where this is above its clean accuracy.",
        head=["run", "clean", *[f"{255 * e:.3g}" for e in s.grid[1:]], "leaks"],
        rows=[[name, pct(st["clean_accuracy"], 1), *[pct(a, 1) for a in st["accuracy"][1:]],
               "yes" if st["leaks"] else "no"] for name, st in leaks.items()])]


# `--what NAME`: the analyses in the order their sections appear; the last four are the Cascade
# paper's (Sec. 4-5).
ANALYSES: dict[str, Callable[[Scene], list[Section]]] = {
    "grid": _grid, "trace": _trace, "study": _study, "embeddings": _embeddings, "landscape": _landscape,
    "transfer": _transfer, "softmax": _softmax, "correlation": _correlation, "leaking": _leaking,
}
CASCADE_ANALYSES = ("transfer", "softmax", "correlation", "leaking")
