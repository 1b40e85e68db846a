"""`robustlab` command line: parses arguments and hands them to `robustlab.experiment`.

A user mistake (`UserError`) prints one line and exits 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from robustlab import __version__
from robustlab.errors import UserError


def _train(args: argparse.Namespace) -> int:
    from robustlab import experiment
    from robustlab.config import load_config
    from robustlab.train import Interrupted

    if args.data_dir:
        args.overrides.append(f"data.data_dir={args.data_dir}")
    if args.resume and args.config is None:
        name = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("name=")), None)
        out_dir = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("out_dir=")), "runs")
        if name is None:
            raise UserError("--resume needs --config FILE or name=RUN to find the run")
        cfg = experiment.resolve_resume_config(name, out_dir, args.overrides)
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


def _eval(args: argparse.Namespace) -> int:
    from robustlab.experiment import evaluate_clean

    if args.batch_size is not None and args.batch_size <= 0:
        raise UserError(f"--batch-size={args.batch_size} is out of range: expected > 0")
    result = evaluate_clean(args.run, which=args.checkpoint, data_dir=args.data_dir,
                            batch_size=args.batch_size, device=args.device)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['run']} ({result['checkpoint']}): clean test accuracy "
              f"{result['clean_accuracy']:.4f} on {result['test_images']} {result['dataset']} images")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustlab", description="Train, attack, detect and explain robust image classifiers."
    )
    parser.add_argument("--version", action="version", version=f"robustlab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a model from a config (and key=value overrides)")
    p.add_argument("--config", "-c", help="YAML config (see configs/); defaults when omitted")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides, e.g. train.epochs=3 model.name=lenet name=myrun")
    p.add_argument("--data-dir", help="where the dataset files are (same as data.data_dir=DIR)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the run from its last checkpoint (starts it if it has none)")
    mode.add_argument("--force", action="store_true", help="replace an existing run directory")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="clean test accuracy of a run or checkpoint")
    p.add_argument("run", help="run directory (runs/NAME) or checkpoint file")
    p.add_argument("--checkpoint", choices=["last", "best"], default="last",
                   help="which checkpoint of a run directory (default: last)")
    p.add_argument("--data-dir", help="where the dataset files are, if not where training read them")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.set_defaults(func=_eval)

    p = sub.add_parser("datasets", help="which datasets are available here, and where")
    p.set_defaults(func=_datasets)
    p = sub.add_parser("models", help="list the registered model architectures")
    p.set_defaults(func=_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"robustlab: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
