"""The shape of the house (docs/architecture.md): imports go downward only, no import circle,
short functions, one module that spells a run's paths, no duck typing between train and
defenses."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "robustlab"

# Lowest first. A package may import its own modules and any package on a lower floor.
FLOORS = [
    {"errors"}, {"registry", "io", "interrupts", "config", "__init__"},
    {"data"}, {"models"}, {"attention"}, {"attacks"}, {"defenses"}, {"eval"}, {"train"},
    {"detectors"}, {"analysis"}, {"report"}, {"experiment"}, {"reproduce"}, {"cli"}, {"__main__"},
]
FLOOR = {package: i for i, floor in enumerate(FLOORS) for package in floor}


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The robustlab modules `path` imports, anywhere in it (function-level imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("robustlab"):
            for alias in node.names:  # `from robustlab.x import y`: y may be a module itself
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("robustlab"))
    return out


def test_imports_go_downward_only():
    known = modules()
    wrong = []
    for module, path in known.items():
        for target in imports(path, known):
            a, b = package(module), package(target)
            if a != b and not FLOOR[b] < FLOOR[a]:
                wrong.append(f"{module} -> {target}")
    assert FLOOR.keys() >= {package(m) for m in known}, "a package is missing from FLOORS"
    assert not wrong, "imports from a lower package to a higher one (or sideways): " + ", ".join(wrong)


def test_no_import_circle():
    known = modules()
    graph = {m: {t for t in imports(p, known) if t in known and t != m} for m, p in known.items()}
    # A package's __init__ re-exports its modules; only its modules' imports of each other count.
    for m in graph:
        graph[m] = {t for t in graph[m] if not (known[t].name == "__init__.py" and m.startswith(t + "."))}
    circles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not circles, "import circles: " + "; ".join(circles)


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 80:
                    long.append(f"{path.relative_to(SRC)}:{node.name} ({lines} lines)")
    assert not long, "functions over 80 lines: " + ", ".join(long)


# A run's layout: the file and folder names RunDir owns, joined onto a path.
LAYOUT = re.compile(r"/\s*f?[\"'](config\.yaml|metrics\.jsonl|teacher\.json|checkpoints|last\.pt|best\.pt|"
                    r"best_robust\.pt|report(_\{[^}]*\})?|explain|detect|kde\.pt|state\.pt|proxy)[\"']")


def test_run_paths_are_spelled_only_in_rundir():
    spelled = [f"{path.relative_to(SRC)}:{i}" for path in SRC.rglob("*.py")
               if path.name != "rundir.py"
               for i, line in enumerate(path.read_text().splitlines(), 1) if LAYOUT.search(line)]
    assert not spelled, "run paths built outside experiment/rundir.py: " + ", ".join(spelled)
    rundir = (SRC / "experiment" / "rundir.py").read_text()
    assert LAYOUT.search(rundir)  # the pattern finds what RunDir does


def test_train_reaches_defenses_without_duck_typing():
    duck = re.compile(r"\b(getattr|hasattr)\((\w+\.)*(objective|adversary|step|pairing)\b")
    found = [f"{path.name}:{i}" for path in (SRC / "train").glob("*.py")
             for i, line in enumerate(path.read_text().splitlines(), 1) if duck.search(line)]
    assert not found, "getattr / hasattr on defense objects in train/: " + ", ".join(found)
