"""What a new user hits first (the Rough edges issue): each behaviour through a real `robustlab`
process where it is about the command line. docs/reliability.md lists them with these tests."""

import os
import signal
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from robustlab.attacks import ATTACKS
from robustlab.config import load_config
from robustlab.experiment import train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.name=synthetic", "data.options={train_size: 128, test_size: 64}", "model.name=lenet",
        "data.batch_size=32", "train.epochs=1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def robustlab(*args, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robustlab", *map(str, args)], capture_output=True,
                          text=True, env=ENV, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    train(load_config(None, [*TINY, f"out_dir={out}", "name=r", "train.monitor_images=0"]),
          log=lambda _: None)
    return out / "r"


@pytest.mark.parametrize("mistake", [
    [*TINY, "model.name=resnet7"],
    ["data.name=fashion-mnist", "data.data_dir={tmp}/nowhere", "model.name=lenet", "train.epochs=1"],
])
def test_a_failed_start_writes_nothing_and_the_corrected_command_runs(tmp_path, mistake):
    bad = robustlab("train", *[a.replace("{tmp}", str(tmp_path)) for a in mistake], f"out_dir={tmp_path}",
                    "name=m")
    assert bad.returncode == 2, bad.stderr
    assert not (tmp_path / "m").exists()
    good = robustlab("train", *TINY, f"out_dir={tmp_path}", "name=m", "train.monitor_images=0")
    assert good.returncode == 0, good.stderr


def test_a_run_that_never_trained_a_step_is_replaced_without_asking(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.yaml").write_text("name: m\nmodel: {name: resnet7}\n")  # a failed start
    done = robustlab("train", *TINY, f"out_dir={tmp_path}", "name=m", "train.monitor_images=0")
    assert done.returncode == 0, done.stderr
    again = robustlab("train", *TINY, f"out_dir={tmp_path}", "name=m", "train.monitor_images=0")
    assert again.returncode == 2 and "already exists" in again.stderr  # a trained run is kept


@pytest.mark.parametrize("write", ["atomic_write_text(path, 'x')", "atomic_torch_save({}, path)"])
def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path, write):
    path = tmp_path / "file"
    code = f"from robustlab.io import atomic_torch_save, atomic_write_text; path = {str(path)!r}; {write}"
    subprocess.run(["bash", "-c", f"umask 027 && {sys.executable} -c \"{code}\""], check=True, env=ENV)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0666 less the umask 027


class Softmaxed(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x).softmax(1)


@pytest.mark.parametrize("name", ["pgd", "fgsm", "mim", "cw_inf"])
def test_every_gradient_attack_warns_once_per_call_about_a_softmax_output(name):
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ATTACKS.build(name, eps=0.1)(Softmaxed(), x, y)
    messages = [str(w.message) for w in caught if "look like probabilities" in str(w.message)]
    assert len(messages) == 1 and "remove the final softmax" in messages[0]


def test_no_softmax_warning_for_logits():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ATTACKS.build("pgd", eps=0.1)(model, torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0]))


def test_ctrl_c_during_attack_says_nothing_is_kept(run_dir):
    proc = subprocess.Popen([sys.executable, "-m", "robustlab", "attack", str(run_dir), "--attack", "pgd",
                             "steps=100000", "--limit", "8"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    assert "Ctrl-C stops it" in proc.stdout.readline()  # the attack has started
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "keeps no partial results" in err and "state.pt" not in err, err


def test_limit_is_the_first_n_images_in_attack_as_in_eval_and_sample_is_random(run_dir):
    first = robustlab("attack", run_dir, "--attack", "fgsm", "--limit", 5, "--json", "--save",
                      run_dir / "first.pt")
    drawn = robustlab("attack", run_dir, "--attack", "fgsm", "--sample", 5, "--seed", 3, "--json",
                      "--save", run_dir / "drawn.pt")
    assert first.returncode == 0 and drawn.returncode == 0, first.stderr + drawn.stderr
    from robustlab.attacks import load_adversarial_set
    from robustlab.data import load_dataset

    test = load_dataset("synthetic", train_size=128, test_size=64).test
    x_adv, labels, _ = load_adversarial_set(run_dir / "first.pt")
    assert torch.equal(labels, test.labels[:5])
    assert (x_adv - test.images[:5].float() / 255).abs().max() <= 0.1 + 1e-6  # within eps of the first 5
    assert '"images_chosen": "a random 5 (seed 3)"' in drawn.stdout
    both = robustlab("attack", run_dir, "--limit", 5, "--sample", 5)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    assert "the first N images" in robustlab("attack", "--help").stdout


def test_the_docs_stand_on_their_own():
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "src").rglob("*.py"))]
    leaning = [str(p.relative_to(ROOT)) for p in texts if "DESIGN.md" in p.read_text() or
               "../shared" in p.read_text()]
    assert leaning == []


def test_help_texts_say_what_the_commands_do():
    listing = robustlab("--help").stdout
    eval_line = next(line for line in listing.splitlines() if line.strip().startswith("eval "))
    assert "suite" in eval_line  # not only "clean test accuracy"
    reproduce = robustlab("reproduce", "--help").stdout
    assert "2 h" not in reproduce and "min" in reproduce


def test_a_missing_run_directory_is_not_called_a_checkpoint(tmp_path):
    done = robustlab("eval", tmp_path / "nope")
    assert done.returncode == 2
    assert "does not exist: give a run directory" in done.stderr and "checkpoint " + str(tmp_path) \
        not in done.stderr


def test_training_says_what_robust_acc_measures_and_that_zero_is_expected_of_a_standard_model(tmp_path):
    done = robustlab("train", *TINY, f"out_dir={tmp_path}", "name=s")
    assert done.returncode == 0, done.stderr
    assert "robust_acc: PGD-10 accuracy at eps 0.1 on 64 held-out (last test) images; near 0 is " \
           "expected of a standard-trained model" in done.stdout


def test_reports_say_which_epoch_and_step_they_measured_and_warn_when_training_has_not_finished(tmp_path):
    import json

    from robustlab.train import load_checkpoint

    done = robustlab("train", *TINY[:-1], "train.epochs=2", f"out_dir={tmp_path}", "name=r",
                     "train.monitor_images=0")
    assert done.returncode == 0, done.stderr
    finished = robustlab("eval", tmp_path / "r", "--suite", "quick", "--limit", 8)
    assert finished.returncode == 0 and "warning" not in finished.stdout
    report = json.loads((tmp_path / "r" / "report" / "report.json").read_text())
    steps = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["global_step"]
    assert report["trained"] == {"epoch": 2, "batch": 0, "epochs": 2, "step": steps, "finished": True}
    assert f"(epoch 2 of 2, step {steps}, training finished)" in \
        (tmp_path / "r" / "report" / "report.md").read_text()
    assert "training finished" in (tmp_path / "r" / "report" / "report.html").read_text()
    # a run meant for 4 epochs whose last checkpoint holds 2 (as after an interruption)
    state = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    state["config"]["train"]["epochs"] = 4
    torch.save(state, tmp_path / "r" / "checkpoints" / "last.pt")
    partial = robustlab("eval", tmp_path / "r", "--json")
    assert partial.returncode == 0
    assert json.loads(partial.stdout)["trained"]["finished"] is False
    warning = [line for line in partial.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "holds epoch 2 of 4" in warning[0]
    assert "not the end of training" in warning[0]
    assert "robustlab train --resume name=r" in warning[0]


def test_a_folder_that_is_not_a_run_is_never_written_into(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my own file")
    refused = robustlab("train", *TINY, f"out_dir={tmp_path}", "name=mine", "train.monitor_images=0")
    assert refused.returncode == 2
    assert "holds files that are not a robustlab run (notes.txt)" in refused.stderr
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_a_missing_tensorboard_package_fails_before_anything_is_trained(tmp_path):
    code = ("import sys; sys.modules['torch.utils.tensorboard'] = None\n"
            "from robustlab.cli import main\n"
            f"sys.exit(main({[*TINY, 'train.tensorboard=true', f'out_dir={tmp_path}', 'name=t']!r}))")
    done = subprocess.run([sys.executable, "-c", code.replace("main([", "main(['train', ")],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 2 and "needs the tensorboard package" in done.stderr
    assert not (tmp_path / "t").exists()


def test_the_readme_has_one_table_of_recipe_robustness_and_it_is_the_results_page():
    import json

    readme = (ROOT / "README.md").read_text()
    tables = [block for block in readme.split("\n\n") if block.lstrip().startswith("| recipe |")]
    assert len(tables) == 1, "one table of per-recipe numbers; the benchmarks' own are linked, not copied"
    page = json.loads((ROOT / "docs" / "results.json").read_text())
    rows = [line.strip("|").split("|") for line in tables[0].splitlines()[2:]]
    assert len(rows) == len(page["status"]["recipes"]) >= 16
    for recipe, clean, pgd, aa, *_ in ([c.strip() for c in row] for row in rows):
        values = page["values"].get(recipe)
        if values is None:  # diverged: no numbers on the page either
            assert clean.startswith("diverged"), recipe
            continue
        phases = page["status"]["recipes"][recipe]
        expected_clean = 100 * (phases.get("clean") or phases["eval"])["clean_accuracy"]
        assert float(clean) == pytest.approx(expected_clean, abs=0.051), recipe
        for cell, column in ((pgd, "PGD-20"), (aa, "AutoAttack")):  # "-": the budget did not measure it
            if column in values:
                assert float(cell) == pytest.approx(100 * values[column], abs=0.051), (recipe, column)
            else:
                assert cell == "-", (recipe, column)
