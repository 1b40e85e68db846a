"""Typed run configuration: YAML files and dotted overrides into dataclasses.

`load_config("configs/standard_fmnist.yaml", ["train.epochs=3", "model.name=lenet"])` returns a
`Config`. An unknown key or a value of the wrong type is a `UserError` that names the key and the
valid ones, so a typo never silently falls back to a default. A float field also takes a fraction
`a/b` (`defense.eps=8/255`): `parse_fraction` is the one reader of fractions, which the CLI's
`--eps` flags (`float_arg`) and attack parameters use too.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from robustlab.errors import UserError, check_ranges

# a/b with decimal numbers a and b (an optional sign on a): how budgets are written, 8/255
_FRACTION = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*/\s*(\d+\.?\d*|\.\d+)\s*")


def parse_fraction(text: str) -> float | None:
    """`a/b` (`8/255`, `2.5 / 255`) as a float; None when `text` is not of that form.

    b = 0 raises `ZeroDivisionError`, so each caller words the error its own way.
    """
    match = _FRACTION.fullmatch(text)
    if match is None:
        return None
    numerator, denominator = float(match[1]), float(match[2])
    if denominator == 0:
        raise ZeroDivisionError(f"{text!r} divides by zero")
    return numerator / denominator


def zero_divisor(name: str, value: str) -> UserError:
    """The one wording of a fraction a/0, for the key or parameter `name`."""
    return UserError(f"{name}={value!r} divides by zero: write a fraction as a/b with b > 0 (e.g. 8/255)")


def fraction_or_value(name: str, value: Any) -> Any:
    """A string `a/b` as its float (a step size of 2/255, say); any other value unchanged. For
    untyped parameters: recipe options, suite entries, attack parameters."""
    if not isinstance(value, str):
        return value
    try:
        fraction = parse_fraction(value)
    except ZeroDivisionError:
        raise zero_divisor(name, value) from None
    return value if fraction is None else fraction


def parse_float(text: str) -> float:
    """A number as Python reads it (`0.1`, `1e-3`) or a fraction `a/b`; ValueError otherwise."""
    try:
        return float(text)
    except ValueError:
        pass
    value = parse_fraction(text)
    if value is None:
        raise ValueError(f"{text!r} is not a number or a fraction a/b (e.g. 0.1, 8/255)")
    return value


def float_arg(text: str) -> float:
    """argparse `type=` of the eps and step-size flags: `parse_float`, errors as argparse's."""
    try:
        return parse_float(text)
    except (ValueError, ZeroDivisionError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# Run seeds are below this; a cached stage (teacher, transfer source, Cascade source; named
# "_<role>_...") trains with seed + offset * STAGE_SEEDS, so no stage is ever bit-identical to a
# run of `reproduce --seeds` (with seed + 2 the seed-0 teacher was the run standard_seed2).
STAGE_SEEDS = 2**32


@dataclass
class DataConfig:
    name: str = "fashion-mnist"
    data_dir: str | None = None
    batch_size: int = 128
    eval_batch_size: int = 500
    # None: augment 32x32 colour data only (random crop + flip), as the CIFAR papers do.
    augment: bool | None = None
    val_fraction: float = 0.0
    # Keep the first N training / test images (after a seeded shuffle): quick runs and tests.
    train_limit: int | None = None
    test_limit: int | None = None
    options: dict = field(default_factory=dict)  # extra loader kwargs (synthetic sizes, ...)


@dataclass
class ModelConfig:
    name: str = "small_cnn"
    options: dict = field(default_factory=dict)  # architecture kwargs (width, depth, ...)


@dataclass
class OptimConfig:
    name: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: list = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class ScheduleConfig:
    name: Literal["constant", "multistep", "cosine", "onecycle"] = "cosine"
    warmup_epochs: float = 0.0
    milestones: list = field(default_factory=lambda: [0.5, 0.75])  # fractions of training
    gamma: float = 0.1
    final_lr_fraction: float = 0.0  # cosine / one-cycle end at lr * this


@dataclass
class TrainConfig:
    epochs: int = 15
    label_smoothing: float = 0.0
    # all: torch's (mass s / K on every class); wrong_classes: s / (K - 1) on the wrong ones
    # (the AGKD-BML authors' code)
    label_smoothing_mode: Literal["all", "wrong_classes"] = "all"
    grad_clip: float | None = None  # max global grad norm
    amp: Literal["off", "bf16", "fp16"] = "off"
    channels_last: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    eval_every: int = 1  # epochs
    log_every: int = 50  # steps between metrics.jsonl lines
    threads: int | None = None  # torch CPU threads; None keeps torch's default
    # Robust accuracy (PGD-k at defense.eps) on this many fixed held-out images per evaluated
    # epoch, with the catastrophic-overfitting alarm; 0 turns it off.
    monitor_images: int = 500
    monitor_steps: int = 10
    # metrics.jsonl's numbers also as TensorBoard scalars in <run>/tensorboard (needs tensorboard)
    tensorboard: bool = False
    # torch.compile the model (inductor; benchmarks/results.md says where it pays); off: eager
    compile: bool = False


@dataclass
class DefenseConfig:
    recipe: str = "standard"
    eps: float | None = None  # training L-inf budget in [0, 1] units; None: the data set's default
    options: dict = field(default_factory=dict)  # recipe kwargs (beta, steps, attack_mode, ...)
    # Extra or re-weighted terms on top of the recipe: {name: weight} or {name: {weight, params}}.
    terms: dict = field(default_factory=dict)
    # A frozen teacher for terms that read one (AGKD-BML): a run directory or checkpoint. None
    # trains a standard model with this run's settings once, cached as <out_dir>/_teacher_...
    teacher: str | None = None
    # Start the student from the teacher's weights (ATAT Sec. 3.2: "initialized with the same
    # parameters as the original network"); needs a teacher of the student's architecture.
    init_from_teacher: bool = False
    # joint: the clean / adversarial / partner images in one train-mode forward; separate: one
    # forward each; None: the recipe's own choice (`robustlab recipes` says which).
    forward: Literal["joint", "separate"] | None = None
    # Cascade training's already defended network, whose iter_FGSM training images are saved once
    # and injected: a run directory or checkpoint. None trains a `pivot` model with this run's
    # settings (another seed) once, cached as <out_dir>/_cascade-source_...
    source: str | None = None


@dataclass
class Config:
    name: str = "standard_fmnist"
    seed: int = 0
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> Config:
        """Range checks that types alone cannot express."""
        checks = [
            (0 <= self.seed < STAGE_SEEDS or self.name.startswith("_"), "seed", self.seed,
             f"in [0, {STAGE_SEEDS}) (seeds above are the cached stages': a teacher or a transfer "
             "source never shares a run's seed)"),
            (self.train.epochs >= 0, "train.epochs", self.train.epochs, "an integer >= 0"),
            (self.data.batch_size > 0, "data.batch_size", self.data.batch_size, "> 0"),
            (self.data.eval_batch_size > 0, "data.eval_batch_size", self.data.eval_batch_size, "> 0"),
            (0 <= self.data.val_fraction < 1, "data.val_fraction", self.data.val_fraction, "in [0, 1)"),
            (self.optim.lr > 0, "optim.lr", self.optim.lr, "> 0"),
            (self.optim.weight_decay >= 0, "optim.weight_decay", self.optim.weight_decay, ">= 0"),
            (0 <= self.optim.momentum < 1, "optim.momentum", self.optim.momentum, "in [0, 1)"),
            (0 <= self.train.label_smoothing < 1, "train.label_smoothing",
             self.train.label_smoothing, "in [0, 1)"),
            (self.train.grad_clip is None or self.train.grad_clip > 0, "train.grad_clip",
             self.train.grad_clip, "> 0 or null"),
            (self.train.eval_every >= 1, "train.eval_every", self.train.eval_every, ">= 1"),
            (self.train.log_every >= 1, "train.log_every", self.train.log_every, ">= 1"),
            (self.schedule.warmup_epochs >= 0, "schedule.warmup_epochs",
             self.schedule.warmup_epochs, ">= 0"),
            (all(0 < m < 1 for m in self.schedule.milestones), "schedule.milestones",
             self.schedule.milestones, "fractions of training in (0, 1)"),
            (0 <= self.schedule.final_lr_fraction <= 1, "schedule.final_lr_fraction",
             self.schedule.final_lr_fraction, "in [0, 1]"),
            (self.data.train_limit is None or self.data.train_limit > 0, "data.train_limit",
             self.data.train_limit, "> 0 or null"),
            (self.data.test_limit is None or self.data.test_limit > 0, "data.test_limit",
             self.data.test_limit, "> 0 or null"),
            (self.train.threads is None or self.train.threads > 0, "train.threads",
             self.train.threads, "> 0 or null"),
            (self.train.monitor_images >= 0, "train.monitor_images", self.train.monitor_images, ">= 0"),
            (self.train.monitor_steps >= 1, "train.monitor_steps", self.train.monitor_steps, ">= 1"),
            (self.defense.eps is None or 0 < self.defense.eps <= 1, "defense.eps", self.defense.eps,
             "in (0, 1] (L-inf, in [0, 1] input units: 0.1, 8/255 = 0.0314) or null"),
        ]
        check_ranges(checks)
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise UserError(f"name={self.name!r} is not a valid run name: use letters, digits, _ or -")
        return self


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; allow int and numeric strings -> float only."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except UserError:
                pass
        raise UserError(f"{key}={value!r} has the wrong type: expected {_type_name(tp)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise UserError(f"{key}={value!r} is not allowed: choose one of {', '.join(map(str, choices))}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads 1e-3 (no dot) as a string, and YAML has no fractions (8/255 is a
        # string): accept what Python reads as a number and a/b. A zero b passes up as
        # ZeroDivisionError, past the Union loop above, to `_coerce_field`.
        try:
            return parse_float(value)
        except ValueError:
            pass
    expected = origin or tp
    if expected is int and isinstance(value, bool):  # bool is an int subclass; never a valid count
        raise UserError(f"{key}={value!r} has the wrong type: expected int")
    if not isinstance(value, expected):
        raise UserError(
            f"{key}={value!r} has the wrong type: expected {_type_name(tp)}, got {type(value).__name__}"
        )
    return value


def _merge(obj: Any, values: dict, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    fields = {f.name for f in dataclasses.fields(obj)}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            raise UserError(
                f"unknown config key {dotted!r}; valid keys here: {', '.join(sorted(fields))}"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise UserError(f"{dotted} must be a mapping of its keys, got {value!r}")
            _merge(current, value, dotted + ".")
        else:
            setattr(obj, key, _coerce_field(value, hints[key], dotted))


def _coerce_field(value: Any, tp: Any, key: str) -> Any:
    """`_coerce`, with a fraction a/0 as a `UserError` naming the key."""
    try:
        return _coerce(value, tp, key)
    except ZeroDivisionError:
        raise zero_divisor(key, value) from None


def _parse_override(text: str) -> dict:
    """`train.epochs=3` -> {"train": {"epochs": 3}}; the value is parsed as YAML."""
    if "=" not in text:
        raise UserError(f"override {text!r} must look like key.subkey=value (e.g. train.epochs=3)")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as exc:
        # ReaderError (a control character) has no `problem`, only its message
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"override {text!r}: the value is not valid YAML ({problem})") from None
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A YAML mapping; `extends: other.yaml` (relative to this file) is read first and this
    file's keys are merged over it, so a recipe's config states only what differs."""
    values = _read_one(Path(path))
    base = values.pop("extends", None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise UserError(f"{path}: extends must be a file name, got {base!r}")
    base_path = (Path(path).parent / base).resolve()
    if base_path in _seen:
        raise UserError(f"{path}: extends {base} makes a cycle")
    return _deep_merge(read_yaml(base_path, (*_seen, base_path)), values)


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in _REPLACED:
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# Free-form option maps: an extending file states them whole (a recipe's options never mix
# with another recipe's).
_REPLACED = {"options", "terms"}


def _read_one(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist; see configs/ for examples") from None
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(values, dict):
        raise UserError(f"config file {path} must hold a mapping of keys, got {type(values).__name__}")
    return values


def config_from_dict(values: dict, overrides: list[str] = ()) -> Config:
    cfg = Config()
    _merge(cfg, values)
    for text in overrides:
        _merge(cfg, _parse_override(text))
    return cfg.validate()


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Defaults, then the YAML file (if any), then each `key=value` override, in that order."""
    return config_from_dict(read_yaml(path) if path else {}, overrides)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
