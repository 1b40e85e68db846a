"""Evaluation suites: YAML files naming attacks, curves and masking checks.

The built-in suites live next to this module (`suites/quick.yaml`, `papers`, `autoattack`,
`full`); `load_suite("path/to/mine.yaml")` reads a copy you edited. Budgets are relative to the
data set's eps so one suite serves every data set:

    attacks:
      - {label: PGD-20, attack: pgd, steps: 20, step_factor: 0.25}   # step = 0.25 eps
      - {label: step_ll, attack: step_ll, eps_factors: [0.25, 0.5, 1, 2]}   # a grid of eps
      - {label: transfer PGD-20, attack: pgd, steps: 20, source: standard}   # black-box
    curves: {steps: [1, 10, 100], eps_factors: [0.5, 1, 2]}
    examples: {count: 8, attack: PGD-20}   # the first 8 images, clean and under that entry
    masking: {large_eps: 0.5}
    include: papers        # another suite's entries first
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from robustlab.attacks import ATTACKS, PGD
from robustlab.config import fraction_or_value, read_yaml
from robustlab.errors import UserError

SUITES_DIR = Path(__file__).with_name("suites")
ENTRY_KEYS = {"label", "attack", "eps_factor", "eps_factors", "step_factor", "source", "worst_case"}
SUITE_KEYS = {"name", "images", "attacks", "curves", "examples", "masking", "include"}
SECTION_KEYS = {"curves": {"steps", "eps_factors"}, "examples": {"count", "attack"}, "masking": {"large_eps"}}


@dataclass(frozen=True)
class SuiteAttack:
    """One column: `attack` at eps_factor x the data set's eps, with its own parameters."""

    label: str
    attack: str
    params: dict = field(default_factory=dict)
    eps_factor: float = 1.0
    step_factor: float | None = None
    source: str | None = None  # a run / checkpoint, or "standard": black-box transfer from it
    worst_case: bool = True  # counts in the per-sample worst case (only entries at eps x 1)

    @property
    def kind(self) -> str:
        if self.source is not None:
            return "transfer"
        kind = ATTACKS.info[self.attack].get("kind", "iterative")
        return "single_step" if kind == "iterative" and self.params.get("steps") == 1 else kind

    @property
    def needs_contract(self) -> bool:
        """Whether the attack reads the model's feature map (A3's Grad-CAM term), which takes the
        `Classifier` contract (features / embed / head) of the model it runs on."""
        attack = self.build(0.1)  # any eps the factors keep in [0, 1]: the parameters decide
        return isinstance(attack, PGD) and attack.attention > 0

    def build(self, eps: float):
        """The attack at eps_factor * eps (step_factor * that eps as its step size)."""
        params = dict(self.params)
        e = self.eps_factor * eps
        if self.step_factor is not None:
            params["step_size"] = self.step_factor * e
        return ATTACKS.build(self.attack, eps=e, **params)


@dataclass
class Suite:
    name: str
    attacks: list[SuiteAttack]
    images: int | None = None
    curves: dict = field(default_factory=dict)  # steps: [..], eps_factors: [..]
    examples: dict = field(default_factory=dict)  # count: N, attack: a label of `attacks`
    masking: dict = field(default_factory=dict)  # large_eps: float

    def fingerprint(self) -> str:
        """Identifies the suite's content, so a resumed evaluation never mixes two suites."""
        content = asdict(self)
        if not content["examples"]:  # a key added later: suites without it keep their fingerprint
            del content["examples"]
        data = json.dumps(content, sort_keys=True, default=str).encode()
        return hashlib.sha256(data).hexdigest()[:16]

    def only(self, labels: list[str] | tuple[str, ...]) -> Suite:
        """These columns alone, in the suite's order, without its curves, examples and large-eps
        check (the gradient-masking probe still runs: it is cheap)."""
        unknown = sorted(set(labels) - {a.label for a in self.attacks})
        if unknown:
            raise ValueError(f"suite {self.name} has no column(s) {', '.join(unknown)}")
        kept = [a for a in self.attacks if a.label in labels]
        return Suite(f"{self.name} ({', '.join(a.label for a in kept)})", kept)

    def with_params(self, params: dict[str, dict]) -> Suite:
        """The same suite with some columns' attack parameters set (label -> parameters), for
        example AutoAttack's faster impl where a budget spends its time on more images."""
        unknown = sorted(set(params) - {a.label for a in self.attacks})
        if unknown:
            raise ValueError(f"suite {self.name} has no column(s) {', '.join(unknown)}")
        return replace(self, attacks=[replace(a, params={**a.params, **params.get(a.label, {})})
                                      for a in self.attacks])


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def load_suite(name_or_path: str | Path) -> Suite:
    """A built-in suite by name, or a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise UserError(f"unknown suite {name_or_path!r}; built in: {', '.join(suite_names())}, "
                            "or give a YAML file")
    return _parse(read_yaml(path), path)


def _parse(values: dict, path: Path, depth: int = 0) -> Suite:
    unknown = sorted(set(values) - SUITE_KEYS)
    if unknown:
        raise UserError(f"{path}: unknown suite key(s) {', '.join(unknown)}; "
                        f"valid: {', '.join(sorted(SUITE_KEYS))}")
    for section, keys in SECTION_KEYS.items():
        extra = sorted(set(values.get(section) or {}) - keys)
        if extra:
            raise UserError(f"{path}: unknown {section} key(s) {', '.join(extra)}; "
                            f"valid: {', '.join(sorted(keys))}")
    base = Suite(name="", attacks=[])
    if "include" in values:
        if depth > 4:
            raise UserError(f"{path}: include nests too deep (a cycle?)")
        name = str(values["include"])
        included = path.parent / name if name.endswith(".yaml") else SUITES_DIR / f"{name}.yaml"
        if not included.is_file():
            raise UserError(f"{path}: include {name!r} is neither a built-in suite "
                            f"({', '.join(suite_names())}) nor a file next to it")
        base = _parse(read_yaml(included), included, depth + 1)
    entries = values.get("attacks") or []
    if not isinstance(entries, list):
        raise UserError(f"{path}: attacks must be a list of mappings")
    attacks = list(base.attacks)
    for entry in entries:
        attacks += _entries(entry, path)
    labels = [a.label for a in attacks]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise UserError(f"{path}: attack label(s) {', '.join(duplicated)} appear twice; labels name columns")
    images = values.get("images", base.images)
    if images is not None and (not isinstance(images, int) or images <= 0):
        raise UserError(f"{path}: images={images!r} must be a positive integer")
    examples = {**base.examples, **(values.get("examples") or {})}
    _check_examples(examples, labels, path)
    return Suite(name=values.get("name", path.stem), attacks=attacks, images=images,
                 curves={**base.curves, **(values.get("curves") or {})}, examples=examples,
                 masking={**base.masking, **(values.get("masking") or {})})


def _check_examples(examples: dict, labels: list[str], path: Path) -> None:
    if not examples:
        return
    count = examples.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 64:
        raise UserError(f"{path}: examples.count={count!r} must be an integer in 1..64")
    if examples.get("attack") not in labels:
        raise UserError(f"{path}: examples.attack={examples.get('attack')!r} must be the label of one "
                        f"of the suite's attacks: {', '.join(labels)}")


def _entries(entry: Any, path: Path) -> list[SuiteAttack]:
    if not isinstance(entry, dict) or "attack" not in entry:
        raise UserError(f"{path}: each attack entry is a mapping with at least 'attack', got {entry!r}")
    name = entry["attack"]
    ATTACKS.get(name)  # a clear error for an unknown attack
    params = {k: fraction_or_value(f"{path}: {k}", v) for k, v in entry.items() if k not in ENTRY_KEYS}
    factors = [fraction_or_value(f"{path}: eps_factor", f)
               for f in entry.get("eps_factors", [entry.get("eps_factor", 1.0)])]
    label = entry.get("label", name)
    out = []
    for factor in factors:
        if not isinstance(factor, (int, float)) or factor <= 0:
            raise UserError(f"{path}: {label}: eps factors must be positive numbers, got {factor!r}")
        if entry.get("worst_case") and factor != 1:
            raise UserError(f"{path}: {label}: worst_case needs eps x 1; the worst case compares "
                            "attacks at one budget")
        one = SuiteAttack(
            label=label if len(factors) == 1 else f"{label} eps x{factor:g}",
            attack=name, params=params, eps_factor=float(factor),
            step_factor=fraction_or_value(f"{path}: step_factor", entry.get("step_factor")),
            source=entry.get("source"),
            worst_case=bool(entry.get("worst_case", factor == 1)),
        )
        one.build(0.1)  # check the parameters now, not an hour into the evaluation
        out.append(one)
    return out
