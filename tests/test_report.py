"""Evaluation suites end to end on a tiny model, the report files and their schema, resuming,
comparison, masking in the report, and the HTML in a real headless browser."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

from robustlab.cli import main
from robustlab.config import load_config
from robustlab.errors import UserError
from robustlab.eval import suite_run
from robustlab.eval.suite import load_suite, suite_names
from robustlab.eval.suite_run import run_suite
from robustlab.experiment import evaluate_suite, train
from robustlab.experiment.compare import load_report
from robustlab.models import create_model
from robustlab.report import compare_markdown, schema, write_report

TINY = ["data.name=synthetic", "data.options={train_size: 256, test_size: 64}", "data.batch_size=32",
        "model.options={width: 8, embedding_dim: 32}", "train.epochs=2", "train.monitor_images=0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny trained runs (standard and madry) on synthetic data."""
    out = tmp_path_factory.mktemp("runs")
    for name, extra in (("std", []), ("adv", ["defense.recipe=madry", "defense.options={steps: 3}"])):
        train(load_config(None, [*TINY, f"out_dir={out}", f"name={name}", *extra]), log=lambda _: None)
    return out


def quiet(_):
    pass


def test_builtin_suites_load_with_the_papers_columns():
    assert suite_names() == ["autoattack", "full", "papers", "quick"]
    papers = {a.label for a in load_suite("papers").attacks}
    for column in ("FGSM", "BIM-7", "PGD-20", "PGD-100", "CW-20", "CW-100", "MIM-40", "AutoAttack",
                   "I-FGSM-20", "PGD-7", "A3-PGD-20", "step_ll eps x0.25", "iter_FGSM eps x2"):
        assert column in papers, column
    full = load_suite("full")
    assert papers < {a.label for a in full.attacks}  # full includes papers
    assert {a.kind for a in full.attacks} == {"single_step", "iterative", "gradient_free", "transfer"}
    grid = [a for a in full.attacks if a.label.startswith("step_ll")]
    assert [a.worst_case for a in grid] == [False, False, True, False]  # only eps x 1 counts


def test_suite_files_give_clear_errors(tmp_path):
    with pytest.raises(UserError, match="unknown suite 'quik'"):
        load_suite("quik")
    bad = tmp_path / "bad.yaml"
    bad.write_text("attacks:\n  - {attack: pgdd}\n")
    with pytest.raises(UserError, match="unknown attack 'pgdd'"):
        load_suite(bad)
    bad.write_text("attacks:\n  - {attack: pgd, stepz: 3}\n")
    with pytest.raises(UserError, match="stepz"):
        load_suite(bad)
    bad.write_text("attacks:\n  - {attack: fgsm}\n  - {attack: fgsm}\n")
    with pytest.raises(UserError, match="appear twice"):
        load_suite(bad)
    bad.write_text("atacks: []\n")
    with pytest.raises(UserError, match="unknown suite key"):
        load_suite(bad)


def test_quick_suite_end_to_end_writes_a_valid_report(runs, capsys):
    assert main(["eval", str(runs / "adv"), "--suite", "quick", "--limit", "48"]) == 0
    out = capsys.readouterr().out
    assert "| PGD-20 |" in out and "report.html" in out
    report = json.loads((runs / "adv" / "report" / "report.json").read_text())
    jsonschema.validate(report, schema())
    assert [a["label"] for a in report["attacks"]] == ["FGSM", "PGD-20"]
    assert report["images"] == 48 and report["recipe"] == "madry"
    fgsm, pgd = report["attacks"]
    assert pgd["accuracy"] <= fgsm["accuracy"] + 0.05
    worst = report["worst_case"]
    assert worst["accuracy"] <= min(fgsm["accuracy"], pgd["accuracy"])
    broken = sum(worst["broken_by"].values())
    assert broken + worst["clean_wrong"] == round((1 - worst["accuracy"]) * 48)
    assert (runs / "adv" / "report" / "report.md").read_text().startswith("# Robustness report: adv")


def test_quick_report_shows_accuracy_vs_eps_and_a_strip_of_clean_and_attacked_examples(runs, tmp_path):
    import base64
    import io

    from PIL import Image

    report = evaluate_suite(runs / "adv", "quick", limit=24, out=str(tmp_path), log=quiet)
    assert list(report["curves"]["eps"]) == ["0.025", "0.05", "0.1", "0.2"]
    curve = list(report["curves"]["eps"].values())
    assert curve == sorted(curve, reverse=True)  # a larger budget never leaves more images correct
    pgd = next(a for a in report["attacks"] if a["label"] == "PGD-20")
    assert curve[2] == pytest.approx(pgd["accuracy"])  # PGD-20 at eps x1 is the column itself
    examples = report["examples"]
    assert [e["index"] for e in examples] == list(range(8))
    from robustlab.experiment import load_run

    loaded = load_run(runs / "adv")
    from robustlab.data import load_dataset

    test = load_dataset("synthetic", **loaded.cfg.data.options).test
    for e in examples:
        clean = Image.open(io.BytesIO(base64.b64decode(e["clean_png"])))
        adv = Image.open(io.BytesIO(base64.b64decode(e["adv_png"])))
        pixels = torch.from_numpy(np.array(clean))
        assert torch.equal(pixels, test.images[e["index"], 0])  # the very test image, lossless
        diff = torch.from_numpy(np.array(adv)).float() - pixels.float()
        assert diff.abs().max() <= 0.1 * 255 + 1  # within eps (one grey level of rounding)
        assert e["label"] == int(test.labels[e["index"]])
    page = (tmp_path / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 16 and "Examples: clean and PGD-20" in page
    assert "| image | true class |" in (tmp_path / "report.md").read_text()


def test_papers_suite_end_to_end(runs, tmp_path):
    report = evaluate_suite(runs / "std", "papers", limit=16, out=str(tmp_path), log=quiet)
    jsonschema.validate(json.loads((tmp_path / "report.json").read_text()), schema())
    labels = [a["label"] for a in report["attacks"]]
    assert len(labels) == 11 + 16  # eleven table columns (A3 too) + four Cascade attacks at four eps
    by = {a["label"]: a for a in report["attacks"]}
    assert by["step_ll eps x2"]["eps"] == pytest.approx(0.2)
    assert by["PGD-20"]["params"]["step_size"] == pytest.approx(0.025)
    names = {c["name"] for c in report["masking"]["checks"]}
    assert {"large_eps", "autoattack_vs_pgd", "iterative_vs_single_step", "zero_gradients"} <= names
    assert report["skipped"] == []  # a Classifier with a source resolver can run every entry


def test_a_report_of_a_plain_module_renders_its_skipped_entries(tmp_path):
    """No run, recipe or checkpoint: the name titles the pages; skipped entries show their reason."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    suite = tmp_path / "mine.yaml"
    suite.write_text("attacks:\n  - {label: FGSM, attack: fgsm}\n  - {label: A3, attack: a3_pgd, steps: 2}\n"
                     "  - {label: transfer FGSM, attack: fgsm, source: standard}\n")
    body = run_suite(model, torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,)), load_suite(suite),
                     eps=0.1, num_classes=10, log=quiet)
    assert [a["label"] for a in body["attacks"]] == ["FGSM"]
    reasons = {s["label"]: s["reason"] for s in body["skipped"]}
    assert "Classifier contract" in reasons["A3"] and "source model" in reasons["transfer FGSM"]
    report = {"name": "my model", "dataset": "digits", "model": "Sequential", **body,
              "created": "2026-01-01T00:00:00+00:00", "robustlab_version": "0"}
    jsonschema.validate(report, schema())
    files = write_report(report, tmp_path / "r")
    text = files["md"].read_text()
    assert text.startswith("# Robustness report: my model\n") and "recipe" not in text
    assert f"| A3 | 0.1 | skipped: {reasons['A3']} | - |" in text
    assert 'class="text skip">skipped: a3_pgd reads' in files["html"].read_text()
    assert compare_markdown([report]).splitlines()[2].startswith("| my model | ")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in report.items() if k != "name"}, schema())


def test_an_interrupted_evaluation_resumes_from_its_state(runs, tmp_path, monkeypatch):
    first = evaluate_suite(runs / "std", "quick", limit=32, out=str(tmp_path), log=quiet)
    calls = []
    real = suite_run.attack_batches
    monkeypatch.setattr(suite_run, "attack_batches", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = evaluate_suite(runs / "std", "quick", limit=32, out=str(tmp_path), log=quiet)
    assert calls == []  # both attacks and the four eps-curve points came from the state file
    assert again["attacks"] == first["attacks"] and again["curves"] == first["curves"]
    evaluate_suite(runs / "std", "quick", limit=24, out=str(tmp_path), log=quiet)
    # another image count is another evaluation: nothing reused; the curve's eps x1 is the PGD-20
    # column's own outcome, not a second run
    assert len(calls) == 2 + 3


class Softmaxed(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).softmax(1)


def test_a_masked_model_gets_a_masking_verdict():
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1, image_size=28, width=8,
                         embedding_dim=32)
    x = torch.rand(32, 1, 28, 28)
    with torch.no_grad():
        y = model.eval()(x).argmax(1)
    report = run_suite(Softmaxed(model), x, y, load_suite("quick"), eps=0.1, num_classes=10, log=quiet)
    status = {c["name"]: c["status"] for c in report["masking"]["checks"]}
    assert status["probability_outputs"] == "warn"
    assert report["masking"]["verdict"].startswith("Robustness is probably overstated by gradient masking")
    honest = run_suite(model, x, y, load_suite("quick"), eps=0.1, num_classes=10, log=quiet)
    assert all(c["status"] == "pass" for c in honest["masking"]["checks"])


def test_compare_marks_the_best_per_column(runs, tmp_path, capsys):
    for name in ("std", "adv"):
        evaluate_suite(runs / name, "quick", limit=32, log=quiet)
    assert main(["compare", str(runs / "std"), str(runs / "adv"), "--out", str(tmp_path)]) == 0
    text = (tmp_path / "compare.md").read_text()
    assert text.splitlines()[0] == "| run | clean | FGSM | PGD-20 | worst case |"
    reports = [load_report(runs / n) for n in ("std", "adv")]
    best_pgd = max(r["attacks"][1]["accuracy"] for r in reports)
    assert f"**{100 * best_pgd:.2f}%**" in compare_markdown(reports)
    assert 'class="best"' in (tmp_path / "compare.html").read_text()
    with pytest.raises(UserError, match="no report"):
        load_report(tmp_path / "nothing")


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not installed (scripts/setup.sh installs Debian's chromium)")
def test_report_html_renders_in_headless_chromium(runs, tmp_path):
    from PIL import Image

    report = evaluate_suite(runs / "adv", "quick", limit=32, out=str(tmp_path / "r"), log=quiet)
    page = Path(report["files"]["html"]).resolve()
    base = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,900",
            f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<td") >= 7 * 3 and "PGD-20" in dom.stdout and "<svg" in dom.stdout
    shot = tmp_path / "shot.png"
    done = subprocess.run([*base, f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    dark = int((pixels.max(1) < 100).sum())  # text and table lines
    bar_blue = int((np.abs(pixels - [0x4A, 0x78, 0xC2]) < 12).all(1).sum())
    assert dark > 2000, "the page looks blank"
    assert bar_blue > 200, "the accuracy plot did not render"


def test_sharded_evaluation_under_torchrun_matches_one_process(runs, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "robustlab", "eval", str(runs / "std"), "--suite", "quick", "--limit", "21",
           "--out", str(tmp_path / "two"), "--device", "cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("# Robustness report") == 1  # rank 0 alone prints and writes
    two = json.loads((tmp_path / "two" / "report.json").read_text())
    one = evaluate_suite(runs / "std", "quick", limit=21, out=str(tmp_path / "one"), log=quiet)
    assert two["environment"]["processes"] == 2 and two["images"] == 21
    for a, b in zip(one["attacks"], two["attacks"]):
        keys = ("label", "accuracy", "success_rate")
        assert [a[k] for k in keys] == [b[k] for k in keys]
    assert one["worst_case"] == two["worst_case"]


def test_transfer_from_a_cached_standard_source_curves_and_their_checks(runs, tmp_path):
    suite = tmp_path / "mine.yaml"
    suite.write_text("name: mine\nattacks:\n"
                     "  - {label: PGD-20, attack: pgd, steps: 20}\n"
                     "  - {label: transfer PGD-20, attack: pgd, steps: 20, source: standard}\n"
                     "curves: {steps: [1, 5], eps_factors: [0.5, 1]}\n")
    logs = []
    report = evaluate_suite(runs / "adv", str(suite), limit=24, out=str(tmp_path / "r"), log=logs.append)
    assert any("training the transfer source" in line for line in logs)
    (source_dir,) = runs.glob("_source_synthetic_small_cnn_*")  # named by a hash of its config
    assert (source_dir / "checkpoints" / "last.pt").is_file()
    assert load_config(source_dir / "config.yaml").defense.recipe == "standard"
    transfer_col = report["attacks"][1]
    assert transfer_col["kind"] == "transfer" and transfer_col["source"] == "standard"
    assert set(report["curves"]) == {"steps", "eps"} and list(report["curves"]["steps"]) == ["1", "5"]
    names = {c["name"] for c in report["masking"]["checks"]}
    assert {"black_box_vs_white_box", "more_steps"} <= names
    assert report["curves"]["eps"]["0.05"] >= report["curves"]["eps"]["0.1"]
    assert "<path d=" in Path(report["files"]["html"]).read_text()  # the curve plots
    logs.clear()
    evaluate_suite(runs / "adv", str(suite), limit=24, out=str(tmp_path / "again"), log=logs.append)
    assert not any("training the transfer source" in line for line in logs)  # cached


def test_report_keeps_per_image_outcomes_that_agree_with_its_accuracies(runs, tmp_path):
    from robustlab.eval.outcomes import first_broken_by, images_digest, unpack

    report = evaluate_suite(runs / "adv", "quick", limit=40, out=str(tmp_path), log=quiet)
    jsonschema.validate(json.loads((tmp_path / "report.json").read_text()), schema())
    out = report["outcomes"]
    assert out["images"]["count"] == 40 and out["images"]["split"] == "test"
    from robustlab.experiment import load_run

    loaded = load_run(runs / "adv")
    from robustlab.data import load_dataset

    test = load_dataset("synthetic", **loaded.cfg.data.options).test
    assert out["images"]["digest"] == images_digest(test.images[:40].float() / 255, test.labels[:40])
    assert unpack(out["clean"], 40).float().mean().item() == pytest.approx(report["clean_accuracy"])
    for column in report["attacks"]:
        assert unpack(out["robust"][column["label"]], 40).float().mean().item() == \
            pytest.approx(column["accuracy"])
    first = first_broken_by(report)
    worst = report["worst_case"]
    for label, count in worst["broken_by"].items():
        assert first.count(label) == count
    assert first.count("wrong without attack") == worst["clean_wrong"]
    assert first.count("robust under every attack") == round(worst["accuracy"] * 40)


def test_compare_pairs_reports_on_the_same_images_and_refuses_other_images(runs, tmp_path, capsys):
    a, b, c = (tmp_path / name for name in ("a", "b", "c"))
    evaluate_suite(runs / "std", "quick", limit=32, out=str(a), log=quiet)
    evaluate_suite(runs / "adv", "quick", limit=32, out=str(b), log=quiet)
    evaluate_suite(runs / "adv", "quick", limit=24, out=str(c), log=quiet)
    assert main(["compare", str(a / "report.json"), str(b / "report.json"), "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "Paired on the same 32 images" in text and "| adv - std |" in text
    from robustlab.eval.outcomes import unpack
    from robustlab.eval.stats import Paired

    reports = [json.loads((d / "report.json").read_text()) for d in (a, b)]
    t = Paired.of(*[unpack(r["outcomes"]["robust"]["PGD-20"], 32) for r in reports])
    lo, hi = t.ci()
    assert f"{100 * t.difference:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] p {t.p_value:.2g}" in text
    assert main(["compare", str(a / "report.json"), str(c / "report.json"), "--out", str(tmp_path)]) == 0
    refused = [line for line in capsys.readouterr().out.splitlines() if line.startswith("not paired")]
    assert len(refused) == 1 and "other images" in refused[0] and "32 images" not in refused[0]
    old = json.loads((a / "report.json").read_text())  # a schema-1 report: no outcomes
    old.pop("outcomes")
    old["schema"] = "robustlab.report/1"
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert main(["compare", str(tmp_path / "old.json"), str(b / "report.json"), "--out", str(tmp_path)]) == 0
    assert "has no per-image outcomes" in capsys.readouterr().out


def test_the_papers_suite_keeps_its_fingerprint():
    # Finished reproductions are keyed by it: a change re-runs every evaluation. Change it only with
    # the suite's content (a new key with an empty default must not change it).
    assert load_suite("papers").fingerprint() == "96eb27d757cf5ea1"
