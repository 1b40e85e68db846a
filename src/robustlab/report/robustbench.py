"""A RobustBench-style model card from a report: the fields of RobustBench's model_info JSON files
(Croce et al. 2021, model_info/<dataset>/<threat>/<Name>.json), so a model evaluated here can be
compared with the leaderboard or submitted to it."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from robustlab.errors import UserError
from robustlab.io import atomic_write_text
from robustlab.report.render import report_title

AUTOATTACK = "autoattack"


def eps_text(eps: float) -> str:
    """As the cards write it: 8/255 when eps is a whole number of 255ths, else the number."""
    steps = eps * 255
    return f"{round(steps)}/255" if abs(steps - round(steps)) < 1e-6 else f"{eps:.4g}"


def robustbench_entry(report: dict) -> dict:
    """The card's fields from a report whose suite ran AutoAttack, with a footnote saying on how
    many images (RobustBench's numbers are on the whole test set). Fields robustlab cannot know
    (the paper's link, authors, venue and its own `reported` number) are left empty for you."""
    entry = next((a for a in report["attacks"] if a["attack"] == AUTOATTACK and not a.get("source")), None)
    if entry is None:
        raise UserError(f"a RobustBench entry needs AutoAttack's accuracy, which suite "
                        f"{report['suite']!r} did not run: use --suite autoattack (or papers)")
    version, impl = entry["params"].get("version", "standard"), entry["params"].get("impl", "reference")
    notes = [] if version == "standard" else [f"AutoAttack version {version!r}, not the standard one."]
    notes.append(f"Evaluated by robustlab on {report['images']} test images (RobustBench: the whole "
                 "test set).")
    return {"link": "", "name": report_title(report), "authors": "", "additional_data": False,
            "number_forward_passes": 1, "dataset": report["dataset"], "venue": "",
            "architecture": report.get("model", ""), "eps": eps_text(entry["eps"]),
            "clean_acc": f"{100 * report['clean_accuracy']:.2f}", "reported": "",
            "autoattack_acc": f"{100 * entry['accuracy']:.2f}", "footnote": " ".join(notes),
            "threat_model": "Linf", "autoattack_version": _autoattack_version(version, impl),
            "robustlab_version": report.get("robustlab_version")}


def _autoattack_version(version: str, impl: str) -> str:
    try:
        package = f"pyautoattack {metadata.version('pyautoattack')}"
    except metadata.PackageNotFoundError:
        package = "pyautoattack (version unknown)"
    return f"{package}, {version} version, robustlab impl={impl}"


def write_robustbench(report: dict, out_dir: Path) -> Path:
    """robustbench.json beside the report."""
    entry = robustbench_entry(report)
    return atomic_write_text(Path(out_dir) / "robustbench.json", json.dumps(entry, indent=1) + "\n")
