"""The explain job: what one or more trained runs look at, as figures and tables.

It joins `analysis` (the numbers) and `report` (the page) for `robustlab explain`; like
`experiment`, it may know every layer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from robustlab.errors import UserError
from robustlab.experiment import DEFAULT_EPS, load_data, load_run, saved_teacher
from robustlab.train.fit import say


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
    from robustlab.analysis import (
        attention_grid,
        attention_trace,
        embedding_study,
        loss_landscape,
        object_iou_study,
        plots,
        shift_iou_study,
    )
    from robustlab.attacks import ATTACKS
    from robustlab.report import Section, write_explain_report

    known = ("grid", "trace", "study", "embeddings", "landscape", *CASCADE_ANALYSES)
    unknown = sorted(set(what) - set(known))
    if unknown:
        raise UserError(f"unknown analysis {', '.join(unknown)}; choose from {', '.join(known)}")
    for flag, value in (("--images", images), ("--study-images", study_images),
                        ("--embed-images", embed_images), ("--trace-steps", trace_steps),
                        ("--surface-images", surface_images), ("--transfer-images", transfer_images)):
        if value < 1:
            raise UserError(f"{flag}={value} is out of range: expected >= 1")
    if not paths:
        raise UserError("explain needs at least one run")
    loaded = [load_run(p, which, data_dir) for p in paths]
    names: list[str] = []
    for one in loaded:  # the same run twice (two checkpoints) gets a suffix
        name = one.cfg.name if one.cfg.name not in names else f"{one.cfg.name} ({one.checkpoint.stem})"
        names.append(name)
    cfg = loaded[0].cfg
    datasets = {one.cfg.data.name for one in loaded}
    if len(datasets) > 1:
        raise UserError(f"runs on different data sets ({', '.join(sorted(datasets))}) cannot be shown side "
                        "by side; explain them one at a time")
    cfg.data.test_limit = None
    ds = load_data(cfg)
    eps = eps if eps is not None else DEFAULT_EPS.get(ds.name, 0.1)
    if not 0 < eps <= 1:
        raise UserError(f"--eps={eps} is out of range: L-inf eps in (0, 1]")
    models = {name: one.model.eval() for name, one in zip(names, loaded)}
    grid_models = {}  # each run, then its teacher when it had one
    for name, one in zip(names, loaded):
        grid_models[name] = models[name]
        teacher = saved_teacher(one.cfg)
        if teacher is not None:
            grid_models[f"{name} teacher"] = teacher.eval()
    test = ds.test
    x_all, y_all = test.images.float().div(255), test.labels
    chosen = ATTACKS.build(attack, eps=eps)
    classes = ds.class_names
    sections: list[Section] = []
    numbers: dict = {"runs": names, "checkpoints": [str(one.checkpoint) for one in loaded],
                     "dataset": ds.name, "eps": eps, "attack": attack}

    if "grid" in what:
        log(f"attention grid: {images} images, {len(grid_models)} models")
        grids = {name: attention_grid(m, x_all[:images], y_all[:images], chosen)
                 for name, m in grid_models.items()}
        sections.append(Section(
            "Attention maps", f"The first {images} test images and their {attack} examples at eps "
            f"{eps:g}; heat maps at input size: the channel mean of the last conv features (AGKD-BML), "
            "Grad-CAM of the true and of the predicted class (ATAT, AAD).", figure="attention_grid.png",
            png=plots.attention_grid_png(grids, classes)))
    if "trace" in what:
        log(f"attention over {trace_steps} PGD iterations")
        pgd = ATTACKS.build("pgd", eps=eps, steps=trace_steps)
        traces = {name: attention_trace(m, x_all[:min(images, 4)], y_all[:min(images, 4)], pgd)
                  for name, m in models.items()}
        sections.append(Section(
            "Attention over the iterations of PGD", f"Grad-CAM of the true class after each of "
            f"{trace_steps} PGD steps (step {pgd.alpha:.4g}); under each image its prediction.",
            figure="attention_trace.png", png=plots.trace_png(traces, classes)))
    if "study" in what:
        step_ll = ATTACKS.build("step_ll", eps=eps)
        rows1, rows3, study = [], [], {}
        for name, m in models.items():
            log(f"attention study (AAD Sec. 3) on {study_images} images: {name}")
            x, y = x_all[:study_images], y_all[:study_images]
            first, third = object_iou_study(m, x, y, step_ll), shift_iou_study(m, x, y, step_ll)
            study[name] = {"object_iou": first, "shift_iou": third}
            t1, t2 = first["table1"], first["table2"]
            rows1.append([name, *[_pct(t1[g]["percentage"]) for g in ("succeed", "fail")],
                          *[_num(t1[g]["iou"]) for g in ("succeed", "fail")],
                          *[_pct(t2[g]["percentage"]) for g in ("succeed", "fail")],
                          *[_num(t2[g]["confidence"]) for g in ("succeed", "fail")]])
            for k, row in third["rows"].items():
                rows3.append([name, k, _num(row["succeed"]), _num(row["fail"])])
        numbers["attention_study"] = study
        sections.append(Section(
            "Attention and object area (AAD Tables 1-2)", "Images the model classifies correctly, "
            f"attacked with step_ll at eps {eps:g}. IoU between the attention area (the Grad-CAM "
            "pixels of the true class, as many as the object has) and the object (pixels brighter "
            "than 0.1), for images the attack fools (succeed) and those it does not (fail); then, "
            "among images with IoU < 0.5, each group's share and clean confidence.",
            head=["run", "% succeed", "% fail", "IoU succeed", "IoU fail", "IoU<0.5: % succeed",
                  "% fail", "confidence succeed", "confidence fail"], rows=rows1))
        sections.append(Section(
            "Clean vs adversarial attention (AAD Table 3)", "IoU between the top-k Grad-CAM cells "
            "of the clean and of the step_ll image (k capped at the number of cells of the last "
            "feature map).", head=["run", "cells k", "IoU succeed", "IoU fail"], rows=rows3))
    if "embeddings" in what:
        studies = {}
        for name, m in models.items():
            log(f"t-SNE of {embed_images} embeddings (and their {attack} examples): {name}")
            studies[name] = embedding_study(m, x_all[:embed_images], y_all[:embed_images], chosen,
                                            ds.num_classes, overlay_classes)
        numbers["embeddings"] = {name: {k: s[k] for k in ("davies_bouldin_clean", "davies_bouldin_adv",
                                                           "adv_accuracy")} | {
            "transitions": s["transitions"].tolist()} for name, s in studies.items()}
        sections.append(Section(
            "Embeddings (AGKD-BML Fig. 3, PDM Fig. 2)", f"t-SNE of the penultimate embeddings of "
            f"{embed_images} test images by class (dots) with their {attack} examples "
            f"{'of classes ' + str(overlay_classes) if overlay_classes else ''} as crosses in the colour "
            "of their true class. Davies-Bouldin index (lower: tighter, better separated classes).",
            head=["run", "DB clean", "DB adversarial (true labels)", "accuracy under attack"],
            rows=[[n, _num(s["davies_bouldin_clean"]), _num(s["davies_bouldin_adv"]), _pct(s["adv_accuracy"])]
                  for n, s in studies.items()], figure="tsne.png", png=plots.tsne_png(studies, classes)))
        sections.append(Section(
            "Original vs adversarial labels (PDM Fig. 1b)", "Counts of each (original, adversarial) "
            "label pair.", figure="transitions.png",
            png=plots.transitions_png({n: s["transitions"] for n, s in studies.items()}, classes)))
    if "landscape" in what:
        log("loss landscapes")
        lands = {name: loss_landscape(m, x_all[:images], y_all[:images], radius=eps)
                 for name, m in models.items()}
        numbers["landscape"] = {n: {"min": float(s["losses"].min()), "max": float(s["losses"].max())}
                                for n, s in lands.items()}
        sections.append(Section(
            "Loss landscape (ATAT Fig. 7)", f"Mean CE of the first {images} test images at x + a "
            f"sign(grad) + b r (r Rademacher), a, b in [-{eps:g}, {eps:g}].",
            figure="landscape.png", png=plots.landscape_png(lands)))

    sections += cascade_sections(what, models, x_all, y_all, eps, surface_images, transfer_images,
                                 numbers, log)

    out_dir = Path(out) if out else Path(paths[0]) / "explain" if Path(paths[0]).is_dir() else \
        loaded[0].checkpoint.parent.parent / "explain"
    files = write_explain_report(f"What {', '.join(names)} look{'s' if len(names) == 1 else ''} at",
                                 sections, numbers, out_dir)
    return {"files": {k: str(v) for k, v in files.items()}, **numbers}


CASCADE_ANALYSES = ("transfer", "softmax", "correlation", "leaking")


def cascade_sections(what, models: dict, x_all, y_all, eps: float, surface_images: int,
                     transfer_images: int, numbers: dict, log: Callable[[str], None]) -> list:
    """The Cascade paper's analyses (Sec. 4-5) that `what` asks for, as report sections; their
    numbers go into `numbers`."""
    from robustlab.analysis import (
        eps_grid,
        gradient_correlation,
        label_leaking,
        plots,
        softmax_arguments,
        transfer_matrix,
    )
    from robustlab.analysis.error_surface import DIRECTIONS
    from robustlab.attacks import ATTACKS
    from robustlab.report import Section

    sections = []
    grid = eps_grid(eps, 11)
    x, y = x_all[:surface_images], y_all[:surface_images]
    if "transfer" in what:
        if len(models) < 2:
            raise UserError("--what transfer needs at least two runs (each is a source and a target)")
        attacks = {name: ATTACKS.build(name, eps=eps) for name in ("step_fgsm", "iter_ll", "iter_fgsm")}
        table = transfer_matrix(models, x_all[:transfer_images], y_all[:transfer_images], attacks, log=log)
        numbers["transfer"] = table
        names = list(models)
        sections.append(Section(
            "Transfer between networks (Cascade Table 4)", f"Accuracy of each target (row) on the "
            f"examples each source (column) makes, on the first {transfer_images} test images at eps "
            f"{eps:g}; the diagonal is white-box. The paper pairs networks of different seeds.",
            head=["attack", "target \\ source", *names],
            rows=[[label, target, *[_pct(table[label][target][source]) for source in names]]
                  for label in table for target in names]))
    if "softmax" in what:
        log(f"softmax arguments vs eps on {len(x)} images")
        curves = {name: {m: softmax_arguments(model, x, y, grid, m) for m in DIRECTIONS}
                  for name, model in models.items()}
        numbers["softmax_arguments"] = curves
        sections.append(Section(
            "Arguments to the softmax vs eps (Cascade Fig. 4, 6)", f"Mean over the first {len(x)} test "
            "images of the true class's logit and of the false classes' mean logit along each "
            "one-step direction, +-1 std shaded.", figure="softmax.png", png=plots.softmax_png(curves)))
    if "correlation" in what:
        log(f"gradient correlations vs eps on {len(x)} images")
        curves = {name: gradient_correlation(model, x, y, grid) for name, model in models.items()}
        numbers["gradient_correlation"] = curves
        pairs = [k for k in next(iter(curves.values())) if k != "eps"]
        sections.append(Section(
            "Correlation of input gradients (Cascade Fig. 5)", f"Pearson correlation between the "
            f"gradients of CE(., y) w.r.t. two images, mean over the first {len(x)} test images "
            f"(+-0.5 std shaded); the table gives it at eps {eps:g}.",
            head=["run", *pairs],
            rows=[[n, *[_num(c[p]["mean"][-1]) for p in pairs]] for n, c in curves.items()],
            figure="correlation.png", png=plots.correlation_png(curves)))
    if "leaking" in what:
        leaks = {name: label_leaking(model, x_all[:transfer_images], y_all[:transfer_images], grid)
                 for name, model in models.items()}
        numbers["label_leaking"] = leaks
        sections.append(Section(
            "Label leaking (Cascade Sec. 4.2)", f"Accuracy on step_FGSM images (which use the true "
            f"label) of the first {transfer_images} test images, by eps x 255; a model leaks labels "
            "where this is above its clean accuracy.",
            head=["run", "clean", *[f"{255 * e:.3g}" for e in grid[1:]], "leaks"],
            rows=[[n, _pct(s["clean_accuracy"]), *[_pct(a) for a in s["accuracy"][1:]],
                   "yes" if s["leaks"] else "no"] for n, s in leaks.items()]))
    return sections


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
