"""scripts/setup.sh: where it installs (never into an externally managed interpreter, PEP 668)."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "scripts" / "setup.sh"


def setup_python(env: dict, cwd: Path = ROOT) -> str:
    done = subprocess.run(["bash", str(SETUP), "--python"], env=env, cwd=cwd, capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


def test_the_environment_is_the_active_one_else_the_projects_venv():
    clean = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    assert setup_python(clean) == f"{ROOT}/.venv/bin/python"
    assert setup_python({**clean, "VIRTUAL_ENV": "/opt/mine"}) == "/opt/mine/bin/python"
    assert setup_python({**clean, "CONDA_PREFIX": "/opt/conda"}) == "/opt/conda/bin/python"


def externally_managed_python(folder: Path) -> Path:
    """A python3 that refuses `pip install` as Debian's does (error: externally-managed-environment)
    and logs every call; anything else runs the real base interpreter."""
    real = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    fake = folder / "python3"
    fake.write_text(f"""#!/bin/bash
echo "$*" >> {folder}/calls.log
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  echo "error: externally-managed-environment" >&2; exit 1
fi
exec {real} "$@"
""")
    fake.chmod(0o755)
    return fake


@pytest.mark.slow
def test_setup_on_an_externally_managed_python_installs_into_the_project_venv(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "*.egg-info", ".pytest_cache", "__pycache__", ".setup*.stamp", "data"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = externally_managed_python(bin_dir)
    (bin_dir / "apt-get").write_text(f"#!/bin/bash\necho \"$*\" >> {bin_dir}/apt.log\n")
    (bin_dir / "apt-get").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    # The new venv sees this interpreter's packages (torch, numpy, ...) as a system-wide install
    # would be seen, so nothing is downloaded; only robustlab is installed into it.
    env.update(PYTHON=str(fake), PATH=f"{bin_dir}:{env['PATH']}",
               PYTHONPATH=sysconfig.get_paths()["purelib"])
    done = subprocess.run(["bash", "scripts/setup.sh"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    venv_python = project / ".venv" / "bin" / "python"
    assert f"Python packages go into {project}/.venv" in done.stdout
    where = subprocess.run([str(venv_python), "-c", "import robustlab; print(robustlab.__file__)"],
                           env={**env, "PYTHONPATH": ""}, capture_output=True, text=True, check=True)
    assert where.stdout.strip() == str(project / "src" / "robustlab" / "__init__.py")
    calls = (bin_dir / "calls.log").read_text()
    assert "-m venv --system-site-packages .venv" in calls
    assert "-m pip" not in calls  # nothing was installed into the externally managed interpreter
    apt = (bin_dir / "apt.log").read_text() if (bin_dir / "apt.log").exists() else ""
    assert "chromium" not in apt  # the browser comes only with --test
