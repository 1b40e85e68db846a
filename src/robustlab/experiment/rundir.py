"""`RunDir`: every path of a run directory, in one place.

    <out_dir>/<name>/
      config.yaml          the resolved config
      metrics.jsonl        a line every train.log_every steps and one per epoch
      tensorboard/         the same scalars as TensorBoard event files (train.tensorboard)
      teacher.json         the teacher checkpoint a run used (AGKD-BML, ATAT)
      checkpoints/         last.pt, best.pt, best_robust.pt
      report/              `robustlab eval` of last.pt (report_<which>/ of another checkpoint)
      explain/             `robustlab explain`
      detect/              `robustlab detect` (kde.pt, proxy/ for the black-box threat)

Nothing outside this module spells one of these names.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from robustlab.config import Config, config_from_dict, read_yaml, save_config
from robustlab.errors import UserError
from robustlab.train import DistInfo, RunFiles
from robustlab.train.distributed import barrier

# What a resumed run may change: more epochs, the data's new place, logging.
RESUMABLE_CHANGES = {"train.epochs", "data.data_dir", "train.tensorboard", "train.compile"}
PROXY_RUN = "proxy"  # the black-box proxy of `robustlab detect`: a run inside detect/
CHECKPOINT_HINT = {"best_robust": "best_robust.pt is kept only while the robust monitor runs "
                                  "(train.monitor_images > 0)"}


class RunDir:
    """The layout of one run directory (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> RunDir:
        """The run a checkpoint file belongs to (<run>/checkpoints/<which>.pt)."""
        return cls(Path(checkpoint).parent.parent)

    @classmethod
    def of(cls, path: str | Path, checkpoint: str | Path) -> RunDir:
        """`path` itself when it is a run directory, else the run of `checkpoint`."""
        path = Path(path)
        return cls(path) if path.is_dir() else cls.of_checkpoint(checkpoint)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def teacher_record(self) -> Path:
        return self.root / "teacher.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, which: str = "last") -> Path:
        return self.checkpoints / f"{which}.pt"

    def files(self) -> RunFiles:
        """What the training loop writes."""
        return RunFiles(root=self.root, metrics=self.metrics, last=self.checkpoint("last"),
                        best=self.checkpoint("best"), best_robust=self.checkpoint("best_robust"),
                        tensorboard=self.tensorboard)

    def report(self, which: str = "last") -> Path:
        """report/ for the last checkpoint, report_<which>/ for another."""
        return self.root / ("report" if which == "last" else f"report_{which}")

    @property
    def report_json(self) -> Path:
        return self.report() / "report.json"

    @property
    def explain(self) -> Path:
        return self.root / "explain"

    @property
    def detect(self) -> Path:
        return self.root / "detect"

    def existing_checkpoint(self, which: str) -> Path:
        """checkpoints/<which>.pt, or a UserError saying why it is missing."""
        candidate = self.checkpoint(which)
        if not candidate.is_file():
            hint = CHECKPOINT_HINT.get(which, "is it a finished robustlab run?")
            raise UserError(f"{self.root} has no checkpoints/{which}.pt; {hint}")
        return candidate

    def saved_config(self, overrides: list[str] | None = None) -> Config:
        """The config this run was started with, with `overrides` on top (`--resume`)."""
        if not self.config.is_file():
            raise UserError(f"no run to resume at {self.root}; start it with robustlab train --config ...")
        return config_from_dict(read_yaml(self.config), overrides or [])

    @property
    def started(self) -> bool:
        """Whether training ever wrote here: a metrics line or a checkpoint. A directory holding
        only config.yaml is a start that failed before its first step."""
        return self.metrics.is_file() or (self.checkpoints.is_dir() and any(self.checkpoints.iterdir()))

    def _foreign_files(self) -> list[str]:
        """What a directory that never trained holds besides a failed start's config.yaml."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.name != "config.yaml")

    def check(self, cfg: Config, *, resume: bool, force: bool, dist: DistInfo) -> None:
        """Refuse to overwrite a run by accident (`--force` replaces it, `--resume` continues it);
        writes nothing, so a refused or failed start leaves the directory as it was."""
        # Every rank checks before any rank writes, so all see the same state and fail alike.
        barrier(dist)
        if not self.started:
            others = self._foreign_files()
            if others and not force:
                shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
                raise UserError(f"{self.root} holds files that are not a robustlab run ({shown}); "
                                "use name=OTHER, or --force to replace it")
            return
        if resume and self.config.is_file():
            # Fill the saved file's defaults first: a key added to Config since the run started is
            # not a difference.
            saved = config_from_dict(read_yaml(self.config)).to_dict()
            diffs = config_differences(saved, cfg.to_dict(), allowed=RESUMABLE_CHANGES)
            if diffs:
                raise UserError(
                    f"cannot resume {self.root}: the config differs from the saved one at "
                    f"{', '.join(diffs)}; resume with the saved settings or use --force to start over"
                )
        elif not force and not resume:
            raise UserError(
                f"run directory {self.root} already exists; use --resume to continue it, --force to "
                "replace it, or name=OTHER for a new run"
            )

    def prepare(self, cfg: Config, *, resume: bool, force: bool, dist: DistInfo) -> None:
        """Create the run directory and save `cfg` once `check` passed and the config, data and
        model are known to be valid. `--force` empties a started run; a run that never trained a
        step is replaced without asking (its only file is the config of a failed start)."""
        barrier(dist)
        if dist.is_main:
            if force and not resume and self.root.is_dir() and any(self.root.iterdir()):
                shutil.rmtree(self.root)
            self.root.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.config)
        barrier(dist)

def detector_path(detect_dir: Path) -> Path:
    """The fitted KDE detector of `robustlab detect` (`detect_dir` may be --out)."""
    return Path(detect_dir) / "kde.pt"


def suite_state(report_dir: Path) -> Path:
    """Where an interrupted evaluation keeps its finished attacks (`report_dir` may be --out)."""
    return Path(report_dir) / "state.pt"


def config_differences(saved: dict, new: dict, allowed: set[str], prefix: str = "") -> list[str]:
    """Dotted keys where two config dicts differ, ignoring `allowed` ones."""
    diffs = []
    for key in sorted(set(saved) | set(new)):
        dotted = prefix + key
        a, b = saved.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and dotted not in allowed:
            diffs += config_differences(a, b, allowed, dotted + ".")
        elif a != b and dotted not in allowed:
            diffs.append(dotted)
    return diffs
