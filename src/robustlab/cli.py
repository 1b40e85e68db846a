"""`robustlab` command line: parses arguments and hands them to `robustlab.experiment`.

A user mistake (`UserError`) prints one line and exits 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from robustlab import __version__
from robustlab.config import float_arg
from robustlab.errors import UserError


def _train(args: argparse.Namespace) -> int:
    from robustlab import experiment
    from robustlab.config import load_config
    from robustlab.train import Interrupted

    if args.model is not None:
        return _train_own(args)
    own = [f"--{key.replace('_', '-')}" for key in ("weights", "data", "recipe", "feature_layer")
           if getattr(args, key) is not None]
    if own:
        raise UserError(f"{', '.join(own)} go with --model package.module:factory (your own model); a "
                        "registered model is set in the config (model.name=..., defense.recipe=...)")
    if args.data_dir:
        args.overrides.append(f"data.data_dir={args.data_dir}")
    if args.resume and args.config is None:
        name = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("name=")), None)
        out_dir = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("out_dir=")), "runs")
        if name is None:
            raise UserError("--resume needs --config FILE or name=RUN to find the run")
        cfg = experiment.RunDir(Path(out_dir) / name).saved_config(args.overrides)
    else:
        cfg = load_config(args.config, args.overrides)
    try:
        run = experiment.train(cfg, resume=args.resume, force=args.force)
    except Interrupted as stop:
        print(f"robustlab: {stop}", file=sys.stderr)
        return 130
    final = run.final
    if "test_acc" in final:
        print(f"clean test accuracy: {final['test_acc']:.4f} ({run.run_dir})")
    return 0


def _train_own(args: argparse.Namespace) -> int:
    """`robustlab train --model package.module:factory --data NAME|PATH --recipe NAME`."""
    from robustlab.experiment.own_training import train_model
    from robustlab.train import Interrupted

    if args.config is not None:
        raise UserError("--config builds a registered model; your own --model takes its settings as "
                        "key=value overrides (train.epochs=3 defense.eps=0.1)")
    if args.data is None:
        raise UserError("your own model needs --data NAME|PATH: a registered data set (robustlab "
                        "datasets) or your folder of class folders / .npz file")
    overrides = list(args.overrides) + ([f"data.data_dir={args.data_dir}"] if args.data_dir else [])
    try:  # the overrides come last, so train.epochs=3 sets the epochs
        model = train_model(args.model, args.data, args.recipe or "madry", weights=args.weights,
                            feature_layer=args.feature_layer, overrides=overrides, resume=args.resume,
                            force=args.force)
    except Interrupted as stop:
        print(f"robustlab: {stop}", file=sys.stderr)
        return 130
    print(f"trained {type(model).__name__} ({args.model}); evaluate the run with robustlab eval RUN")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import functools

    from robustlab.experiment import evaluate_clean, evaluate_suite
    from robustlab.experiment.own_model import evaluate_external

    if args.batch_size is not None and args.batch_size <= 0:
        raise UserError(f"--batch-size={args.batch_size} is out of range: expected > 0")
    own = [f"--{key.replace('_', '-')}" for key in ("model", "weights", "data", "feature_layer", "name")
           if getattr(args, key) is not None]
    if own and args.run is not None:
        raise UserError(f"{', '.join(own)} evaluate your own model, not a run: drop RUN or {own[0]}")
    if args.run is None and not own:
        raise UserError("give a run directory or checkpoint (RUN), or your own model: "
                        "--model package.module:factory --data NAME")
    if own and args.data is None:
        raise UserError("your own model needs --data NAME|PATH: a registered data set "
                        "(robustlab datasets) or a folder of class folders / .npz file")
    if args.robustbench:  # before an hour of attacks, not after
        _check_robustbench_suite(args.suite or ("papers" if own else None))
    # with --json, stdout holds the one JSON line only: progress goes to stderr
    log = functools.partial(print, file=sys.stderr if args.json else sys.stdout, flush=True)
    if own:
        args.suite = args.suite or "papers"
        report = evaluate_external(args.model, args.weights, args.data, suite=args.suite, eps=args.eps,
                                   limit=args.limit, feature_layer=args.feature_layer, source=args.source,
                                   name=args.name, data_dir=args.data_dir, device=args.device,
                                   batch_size=args.batch_size or 256, out=args.out, log=log)
    elif args.suite:
        report = evaluate_suite(args.run, args.suite, which=args.checkpoint, limit=args.limit,
                                eps=args.eps, data_dir=args.data_dir, device=args.device,
                                batch_size=args.batch_size, source=args.source, out=args.out,
                                compile=args.compile, log=log)
    if args.suite:
        if args.robustbench and "files" in report:
            from robustlab.report import write_robustbench

            card = write_robustbench(report, Path(report["files"]["json"]).parent)
            print(f"RobustBench entry: {card}", file=sys.stderr if args.json else sys.stdout)
        if "files" in report:  # rank 0
            if args.json:
                print(json.dumps({k: v for k, v in report.items() if k != "files"}))
            else:
                from robustlab.report import markdown

                print(markdown(report))
                print(f"report: {report['files']['html']} (and report.md, report.json)")
        return 0
    result = evaluate_clean(args.run, which=args.checkpoint, data_dir=args.data_dir,
                            batch_size=args.batch_size, device=args.device, log=log)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['run']} ({result['checkpoint']}): clean test accuracy "
              f"{result['clean_accuracy']:.4f} on {result['test_images']} {result['dataset']} images")
    return 0


def _check_robustbench_suite(suite: str | None) -> None:
    from robustlab.eval.suite import load_suite
    from robustlab.report.robustbench import AUTOATTACK

    if suite is None or not any(e.attack == AUTOATTACK for e in load_suite(suite).attacks):
        raise UserError(f"--robustbench needs AutoAttack's accuracy, which suite {suite!r} does not run: "
                        "use --suite autoattack (or papers)")


def _compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from robustlab.experiment.compare import load_report
    from robustlab.io import atomic_write_text
    from robustlab.report import compare_html, compare_markdown

    reports = [load_report(path) for path in args.runs]
    out = Path(args.out)
    text = compare_markdown(reports)
    atomic_write_text(out / "compare.md", text)
    atomic_write_text(out / "compare.html", compare_html(reports))
    print(text + f"\nwritten to {out}/compare.md and compare.html")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from robustlab.reproduce import reproduce
    from robustlab.train import Interrupted

    try:
        status = reproduce(args.budget, only=args.only, dataset=args.dataset, out=args.out, seeds=args.seeds,
                           results=None if args.no_pages else args.results, configs=args.configs)
    except (Interrupted, KeyboardInterrupt) as stop:
        print(f"robustlab: reproduce interrupted ({stop or 'Ctrl-C'}); finished work is kept: run the "
              "same command again to continue", file=sys.stderr)
        return 130
    done = sum(1 for r in status["recipes"].values() if "eval" in r)
    print(f"{done} of {len(status['recipes'])} recipes evaluated; this call took "
          f"{status['last_call_seconds'] / 60:.1f} min")
    return 0


def _detect(args: argparse.Namespace) -> int:
    from robustlab.experiment.detect import detect

    result = detect(args.run, which=args.checkpoint, images=args.images, per_class=args.per_class,
                    bandwidth=args.bandwidth, threats=tuple(t.strip() for t in args.threats.split(",")),
                    eps=args.eps, cw_hc_steps=args.cw_hc_steps, wb_steps=args.wb_steps,
                    proxy_epochs=args.proxy_epochs, batch=args.batch_size, out=args.out,
                    data_dir=args.data_dir)
    print(f"clean accuracy {result['clean_accuracy']:.4f}")
    for label, row in result.get("gray_box", {}).items():
        auc = "-" if row["auc"] is None else f"{row['auc']:.3f}"
        print(f"gray-box {label:10s} AUC {auc} ({row['successful']} successful examples)")
    if "white_box" in result:
        final = result["white_box"]["final"]
        print(f"white-box C&W-wb: AUC {final['auc']}, distortion d {final.get('mean_distortion')}")
    if "black_box" in result:
        print(f"black-box: AUC {result['black_box']['auc']}")
    print(f"report: {result['files']['html']} (and detect.md, detect.json)")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from robustlab.experiment.explain import explain

    overlay = None
    if args.overlay_classes:
        try:
            overlay = [int(c) for c in args.overlay_classes.split(",")]
        except ValueError:
            raise UserError(f"--overlay-classes={args.overlay_classes!r}: give class numbers, "
                            "e.g. 0,6") from None
    result = explain(args.runs, which=args.checkpoint, what=tuple(w.strip() for w in args.what.split(",")),
                     images=args.images, study_images=args.study_images, embed_images=args.embed_images,
                     attack=args.attack, eps=args.eps, trace_steps=args.trace_steps,
                     overlay_classes=overlay, surface_images=args.surface_images,
                     transfer_images=args.transfer_images, out=args.out, data_dir=args.data_dir)
    print(f"explain: {result['files']['html']} (and explain.md, explain.json, "
          f"{', '.join(k for k in result['files'] if k.endswith('.png'))})")
    return 0


def _attack_params(pairs: list[str]) -> dict:
    """`eps=8/255 steps=20 target=least_likely` -> a dict (YAML values; a/b fractions allowed)."""
    import yaml

    from robustlab.config import fraction_or_value

    params = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UserError(f"attack parameter {pair!r} must look like key=value (e.g. eps=0.1)")
        value = fraction_or_value(f"attack parameter {key}", raw)
        params[key] = value if not isinstance(value, str) else yaml.safe_load(raw)
    return params


def _attack(args: argparse.Namespace) -> int:
    from robustlab.experiment import attack_run

    if not args.json:
        print(f"robustlab attack: {args.attack} on {args.run}; Ctrl-C stops it (no partial results "
              "are kept)", flush=True)
    result = attack_run(args.run, args.attack, _attack_params(args.params), which=args.checkpoint,
                        split=args.split, limit=args.limit, sample=args.sample, seed=args.seed,
                        batch_size=args.batch_size,
                        data_dir=args.data_dir, device=args.device, save=args.save)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['attack']} {result['params']} on {result['images_chosen']} {result['dataset']} "
          f"{result['split']} images of {result['run']}:")
    print(f"  clean accuracy   {result['clean_accuracy']:.4f}")
    print(f"  robust accuracy  {result['robust_accuracy']:.4f}")
    print(f"  success rate     {result['success_rate']:.4f} (of the clean-correct images)")
    print(f"  L-inf mean / max {result['linf_mean']:.4f} / {result['linf_max']:.4f}")
    print(f"  L2 mean / max    {result['l2_mean']:.4f} / {result['l2_max']:.4f}")
    print(f"  time             {result['seconds']:.1f} s")
    if "saved" in result:
        print(f"  saved to         {result['saved']}")
    return 0


def _attacks(args: argparse.Namespace) -> int:
    from robustlab.attacks import ATTACKS

    for name in ATTACKS.names():
        info = ATTACKS.info[name]
        defaults = ", ".join(f"{k}={v}" for k, v in info.get("defaults", {}).items())
        print(f"{name:<12} [{'/'.join(info.get('norms', ()))}] {info.get('paper', '')}"
              + (f" (defaults: {defaults})" if defaults else ""))
    return 0


# what a recipe's terms read beyond the logits -> what robustlab.train needs of your own model
_LAYERS = {"embedding": "an nn.Linear classifier (the embedding is its input)",
           "features": "feature_layer= (its last conv module: the attention map)",
           "embedding + features": "feature_layer= and an nn.Linear classifier"}


def _recipes(args: argparse.Namespace) -> int:
    from robustlab.defenses.recipes import describe_recipes

    for row in describe_recipes():
        terms = " + ".join(f"{w:g} {t}" for t, w in row["terms"].items())
        options = ", ".join(f"{k}={v}" for k, v in row["options"].items())
        forward = {"joint": "one concatenated train-mode forward of every image set",
                   "separate": "a train-mode forward per image set"}.get(row["forward"], row["forward"])
        print(f"{row['name']}: {row['paper']}\n    loss = {terms}\n    adversary: {row['adversary']}"
              + f"\n    forward: {forward}"
              + (f"\n    teacher: {row['teacher']}" if row.get("teacher") else "")
              + (f"\n    your own model needs: {_LAYERS[' + '.join(row['reads'])]}" if row["reads"] else "")
              + (f"\n    options: {options}" if options else ""))
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from robustlab.data import dataset_status

    rows = dataset_status()
    width = max(len(name) for name, _, _ in rows)
    for name, available, where in rows:
        print(f"{name:<{width}}  {'yes' if available else 'no ':<3}  {where}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from robustlab.models import MODELS

    for name in MODELS.names():
        print(name)
    return 0


CHECKPOINTS = ["last", "best", "best_robust"]


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model from a config (and key=value overrides)")
    p.add_argument("--config", "-c", help="YAML config (see configs/); defaults when omitted")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides, e.g. train.epochs=3 model.name=lenet name=myrun")
    p.add_argument("--data-dir", help="where the dataset files are (same as data.data_dir=DIR)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the run from its last checkpoint (starts it if it has none)")
    mode.add_argument("--force", action="store_true", help="replace an existing run directory")
    own = p.add_argument_group("your own model, instead of --config (run: runs/<class>_<recipe>, "
                               "or name=... out_dir=...)")
    own.add_argument("--model", metavar="MODULE:FACTORY",
                     help="package.module:factory, a callable returning the nn.Module (or the class), "
                          "imported with the current directory on the path")
    own.add_argument("--weights", metavar="FILE", help="its starting state_dict (optional)")
    own.add_argument("--data", metavar="NAME|PATH", help="a registered data set (robustlab datasets) or "
                     "your folder of class folders / .npz file")
    own.add_argument("--recipe", help="the defense (robustlab recipes; default madry)")
    own.add_argument("--feature-layer", metavar="NAME", help="the submodule whose output is the feature "
                     "map, for the recipes that read attention (agkd_bml, atat, aad_*)")
    p.set_defaults(func=_train)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="clean test accuracy or an evaluation suite of a run, a checkpoint "
                       "or your own model (--model)")
    p.add_argument("run", nargs="?", help="run directory (runs/NAME) or checkpoint file")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default="last",
                   help="which checkpoint of a run directory (default: last; best_robust: the "
                        "epoch with the best monitored PGD accuracy)")
    p.add_argument("--data-dir", help="where the dataset files are, if not where training read them")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.add_argument("--suite", help="evaluation suite: quick, papers, autoattack, full, or a YAML file; "
                                   "writes RUN/report/report.{json,md,html} (without it: clean accuracy)")
    p.add_argument("--limit", type=int, help="the first N test images (default: the suite's images)")
    p.add_argument("--eps", type=float_arg, help="L-inf budget (default: the data set's: 0.1 Fashion-MNIST, "
                                             "0.3 MNIST, 8/255 CIFAR and SVHN)")
    p.add_argument("--source", help="transfer-attack source run or checkpoint (default: a standard-"
                                    "trained model on the same data, trained once and cached; your "
                                    "own model's transfer attacks are skipped without it)")
    p.add_argument("--out", help="report directory (default: RUN/report; your own model: reports/NAME)")
    p.add_argument("--robustbench", action="store_true", help="also write robustbench.json beside the "
                   "report: the fields of a RobustBench model card (needs AutoAttack in the suite)")
    p.add_argument("--compile", action="store_true", help="run the model through torch.compile (inductor; "
                   "the first batch of each shape compiles; benchmarks/results.md says where it pays)")
    own = p.add_argument_group("your own model, instead of RUN (default suite: papers)")
    own.add_argument("--model", metavar="MODULE:FACTORY",
                     help="package.module:factory, a callable returning the nn.Module (or the class), "
                          "imported with the current directory on the path")
    own.add_argument("--weights", metavar="FILE", help="its state_dict (torch.save(model.state_dict(), "
                     "FILE)), or a TorchScript file (torch.jit.save; then no --model)")
    own.add_argument("--data", metavar="NAME|PATH", help="a registered data set (robustlab datasets) or "
                     "your folder of class folders / .npz file: its first --limit test images")
    own.add_argument("--feature-layer", metavar="NAME", help="the submodule whose output is the feature "
                     "map (read by a hook) for A3's Grad-CAM; without it A3 is skipped")
    own.add_argument("--name", help="the report's title (default: the model's class name)")
    p.set_defaults(func=_eval)


def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="runs side by side (their report.json), best per column marked")
    p.add_argument("runs", nargs="+", help="run directories or report.json files")
    p.add_argument("--out", default="runs/compare", help="where compare.md and compare.html go")
    p.set_defaults(func=_compare)


def _add_detect(sub) -> None:
    p = sub.add_parser("detect", help="KDE detection of adversarial inputs under gray-, white- and black-box "
                       "threat models (PDM Tables 1-4) -> RUN/detect/")
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("--threats", default="gray,white,black", help="comma-separated threat models")
    p.add_argument("--images", type=int, default=200, help="test images attacked (default 200)")
    p.add_argument("--per-class", type=int, default=1000, help="training embeddings per class in the KDE")
    p.add_argument("--bandwidth", type=float, help="KDE bandwidth (default: cross-validated)")
    p.add_argument("--eps", type=float_arg, help="FGSM / BIM budget (default: the data set's; also eps / 2)")
    p.add_argument("--cw-hc-steps", type=int, default=1000, help="C&W-hc iterations (PDM: 1000)")
    p.add_argument("--wb-steps", type=int, default=1000, help="C&W-wb iterations (PDM: 5000 / 10000)")
    p.add_argument("--proxy-epochs", type=int, default=2, help="epochs of the black-box proxy's distillation")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--checkpoint", default="last", help="last (default), best or best_robust")
    p.add_argument("--out", help="output directory (default: RUN/detect)")
    p.add_argument("--data-dir", help="where the data set lives (default: the run's)")
    p.set_defaults(func=_detect)


def _add_explain(sub) -> None:
    p = sub.add_parser("explain", help="what runs look at: attention maps, attention studies, embeddings, "
                       "loss landscapes, error surface and transfer (PNGs + explain.html)")
    p.add_argument("runs", nargs="+", help="run directories or checkpoint files, shown side by side")
    p.add_argument("--what", default="grid,trace,study,embeddings,landscape",
                   help="comma-separated analyses: grid, trace, study, embeddings, landscape (the "
                   "default), and the Cascade paper's transfer (2+ runs), softmax, correlation, leaking")
    p.add_argument("--images", type=int, default=6, help="images in the attention grid and landscape")
    p.add_argument("--study-images", type=int, default=500, help="images in the attention study")
    p.add_argument("--embed-images", type=int, default=1000, help="images in the t-SNE")
    p.add_argument("--attack", "-a", default="pgd", help="attack for the grid and embeddings")
    p.add_argument("--eps", type=float_arg, help="L-inf budget (default: the data set's)")
    p.add_argument("--trace-steps", type=int, default=10, help="PGD iterations in the attention trace")
    p.add_argument("--overlay-classes", help="comma-separated classes whose adversarial examples the "
                   "t-SNE shows (default: all)")
    p.add_argument("--surface-images", type=int, default=128,
                   help="images in the softmax and gradient-correlation curves (the paper: 128)")
    p.add_argument("--transfer-images", type=int, default=1000,
                   help="images in the transfer matrix and the label-leaking table")
    p.add_argument("--checkpoint", default="last", help="last (default), best or best_robust")
    p.add_argument("--out", help="output directory (default: RUN/explain)")
    p.add_argument("--data-dir", help="where the data set lives (default: the run's)")
    p.set_defaults(func=_explain)


def _add_attack(sub) -> None:
    p = sub.add_parser("attack", help="attack a run or checkpoint on its data set")
    p.add_argument("run", help="run directory (runs/NAME) or checkpoint file")
    p.add_argument("--attack", "-a", default="pgd", help="attack name (robustlab attacks lists them)")
    p.add_argument("params", nargs="*", metavar="KEY=VALUE",
                   help="attack parameters, e.g. eps=0.1 steps=20 (eps defaults per data set)")
    p.add_argument("--split", default="test", help="test (default) or train")
    chosen = p.add_mutually_exclusive_group()
    chosen.add_argument("--limit", type=int, help="attack the first N images of the split, as eval "
                        "--limit does (default: the whole split, 10,000 test images for the "
                        "built-in data sets)")
    chosen.add_argument("--sample", type=int, metavar="N", help="attack a random N images (drawn "
                        "with --seed)")
    p.add_argument("--seed", type=int, default=0, help="the draw of --sample (default 0)")
    p.add_argument("--save", help="write the adversarial set (images, labels, metadata) to this file")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default="last")
    p.add_argument("--data-dir")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.set_defaults(func=_attack)


def _add_reproduce(sub) -> None:
    p = sub.add_parser("reproduce", help="train every recipe, evaluate each with the papers suite, run "
                       "PDM detection, and write docs/results.md + docs/results.html (resumable)")
    p.add_argument("--budget", required=True, help="small (about 80 min on 2 CPU cores), medium (the 16 "
                   "recipes the papers' claims compare, each claim's columns on the images its paired "
                   "test needs; 110 min here from a fresh machine) or full (the configs' "
                   "schedules, the suites' sizes)")
    p.add_argument("--only", help="comma-separated recipes (default: all 22; medium: its 16)")
    p.add_argument("--seeds", type=int, default=1, help="train and evaluate every recipe with N seeds (the "
                   "config's seed, +1, ...); verdicts then combine the seeds (default 1)")
    p.add_argument("--dataset", default="fashion-mnist", help="data set (default fashion-mnist; its "
                   "default eps)")
    p.add_argument("--out", help="runs directory (default runs/reproduce/BUDGET_DATASET)")
    p.add_argument("--results", default="docs/results.md", help="results page (and .html beside it)")
    p.add_argument("--no-pages", action="store_true", help="train and evaluate only")
    p.add_argument("--configs", default="configs", help="where <recipe>_fmnist.yaml are")
    p.set_defaults(func=_reproduce)


def _add_attacks(sub) -> None:
    p = sub.add_parser("attacks", help="list the attacks with their papers and defaults")
    p.set_defaults(func=_attacks)


def _add_recipes(sub) -> None:
    p = sub.add_parser("recipes", help="list the defense recipes: paper, loss terms, adversary, options")
    p.set_defaults(func=_recipes)


def _add_datasets(sub) -> None:
    p = sub.add_parser("datasets", help="which datasets are available here, and where")
    p.set_defaults(func=_datasets)


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the registered model architectures")
    p.set_defaults(func=_models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustlab", description="Train, attack, detect and explain robust image classifiers."
    )
    parser.add_argument("--version", action="version", version=f"robustlab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_train, _add_eval, _add_compare, _add_detect, _add_explain, _add_attack, _add_reproduce,
                _add_attacks, _add_recipes, _add_datasets, _add_models):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # KEY=VALUE pairs may also follow options (RUN --attack pgd eps=0.1): argparse leaves those
    # over, and they join the command's own pairs; anything else left over is an error.
    args, extra = parser.parse_known_args(argv)
    pairs = "overrides" if args.command == "train" else "params" if args.command == "attack" else None
    if extra and (pairs is None or any(e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        getattr(args, pairs).extend(extra)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        from robustlab.interrupts import handling

        with handling(_interrupt):
            code = args.func(args)
        from robustlab.train.distributed import end_distributed

        end_distributed()  # every rank reached the end: let them leave together
        return code
    except UserError as exc:
        if args.debug:
            raise
        print(f"robustlab: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permission denied, ...: the files written so far are whole
        if args.debug:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"robustlab: error: {exc.strerror or exc}{where}; files already written are intact, "
              "free space or fix the permission and run the command again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"robustlab: interrupted; {_what_is_kept(args)}", file=sys.stderr)
        return 130


def _what_is_kept(args: argparse.Namespace) -> str:
    """What an interrupted command leaves to continue from: only what it really saves."""
    if args.command == "eval" and getattr(args, "suite", None):
        return ("the finished attacks are kept in the report directory's state.pt: run the same "
                "command again to continue")
    if args.command == "detect":
        return ("a finished black-box proxy (detect/proxy) is kept; the attacks and the KDE start "
                "again when you run the same command")
    if args.command == "train":
        return "the last checkpoint is kept: add --resume to continue"
    return f"robustlab {args.command} keeps no partial results: run it again to start over"


def _interrupt(signum, frame):
    """SIGINT and SIGTERM end a command as Ctrl-C does (training installs its own handlers, which
    save a checkpoint first); the state files written so far are atomic, so nothing is lost.
    SIGINT is set explicitly: a process started in the background inherits it ignored."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
