"""The compare job: evaluated runs side by side (their report.json)."""

from __future__ import annotations

import json
from pathlib import Path

from robustlab.errors import UserError
from robustlab.experiment.rundir import RunDir


def load_report(path: str | Path) -> dict:
    """A run directory's report/report.json, or a report.json file."""
    path = Path(path)
    file = RunDir(path).report_json if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"{path} has no report/report.json; run `robustlab eval {path} --suite quick` first")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{file} is not valid JSON ({exc.msg}); evaluate the run again") from None
