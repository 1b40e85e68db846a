"""`robustlab reproduce`: budgets, skipping and resuming, divergence, the claims check and the pages."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from robustlab import experiment
from robustlab.cli import main
from robustlab.config import load_config
from robustlab.errors import UserError
from robustlab.reproduce import BUDGETS, RECIPES, Budget, recipe_config, reproduce
from robustlab.reproduce.claims import CLAIMS, Claim, standard_error
from robustlab.reproduce.pages import Results, claim_rows, claims_section, paper_section
from robustlab.reproduce.papers import TABLES, PaperTable
from robustlab.reproduce.plan import ClaimEvaluation
from robustlab.train import Callback, Diverged, Interrupted

TINY = Budget("tiny", train_images=128, epochs=1, monitor_images=0, suite_images=6,
              detect={"images": 6, "per_class": 10, "cw_hc_steps": 2, "wb_steps": 2, "proxy_epochs": 1})


def quiet(_: str) -> None:
    pass


@pytest.mark.parametrize("budget", sorted(BUDGETS))
def test_every_recipe_has_a_config_under_each_budget(tmp_path, budget):
    for recipe in RECIPES:
        cfg = recipe_config(recipe, BUDGETS[budget], "fashion-mnist", tmp_path)
        assert cfg.defense.recipe == recipe and cfg.run_dir == tmp_path / recipe
        assert cfg.model.name == "small_cnn"
        if budget in ("small", "medium"):
            assert (cfg.data.train_limit, cfg.train.epochs, cfg.train.monitor_images) == (10_000, 2, 0)
        else:  # the configs' own schedule (15 epochs; free_at's 8 replays of 2 epochs cost as much)
            own = load_config(f"configs/{recipe}_fmnist.yaml")
            assert cfg.data.train_limit is None and cfg.train.epochs == own.train.epochs
            assert cfg.train.epochs == (2 if recipe == "free_at" else 15)


def test_another_data_set_takes_its_own_eps(tmp_path):
    cfg = recipe_config("madry", BUDGETS["small"], "mnist", tmp_path)
    assert cfg.data.name == "mnist" and cfg.defense.eps == pytest.approx(0.3)
    assert recipe_config("standard", BUDGETS["small"], "mnist", tmp_path).defense.eps is None


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="not a budget: choose small or full or medium"):
        reproduce("tiny", out=str(tmp_path), results=None)
    with pytest.raises(UserError, match="unknown recipe.*nope"):
        reproduce("small", only="madry,nope", out=str(tmp_path), results=None)
    with pytest.raises(UserError, match="not a data set"):
        reproduce("small", dataset="imagenet", out=str(tmp_path), results=None)
    with pytest.raises(UserError, match="--configs"):
        reproduce("small", configs=str(tmp_path / "missing"), out=str(tmp_path), results=None)
    assert main(["reproduce", "--budget", "huge"]) == 2
    (tmp_path / "reproduce.json").write_text('{"recipes": {')  # cut off mid-write by hand
    with pytest.raises(UserError, match="not valid JSON.*delete it"):
        reproduce(TINY, out=str(tmp_path), results=None)


def test_reproduce_trains_evaluates_detects_then_skips_everything(tmp_path, monkeypatch):
    import time

    out, page = tmp_path / "runs", tmp_path / "docs" / "results.md"
    before = time.time()
    status = reproduce(TINY, only="pdm,standard", dataset="synthetic", out=str(out), results=str(page),
                       log=quiet)
    started = time.mktime(time.strptime(status["calls"][0]["started"], "%Y-%m-%d %H:%M:%S"))
    assert before - 1 <= started <= before + 1 < time.time() - 2  # when it started, not when it ended
    for recipe in ("standard", "pdm"):
        phases = status["recipes"][recipe]
        assert phases["train"]["status"] == "done" and phases["train"]["epochs"] == 1
        assert phases["eval"]["images"] == 6 and phases["eval"]["clean_images"] == 256
        assert Path(phases["eval"]["report"]).is_file() and Path(phases["detect"]["report"]).is_file()
    text = page.read_text()
    for heading in ("## Every recipe", "## Do the papers' claims hold here?", "## Gradient-masking checks",
                    "## KDE detection of the PDM family", "## PDM Table 1 (MNIST)", "## Time"):
        assert heading in text
    assert page.with_suffix(".html").is_file() and page.with_suffix(".json").is_file()

    def never(*args, **kwargs):
        raise AssertionError("finished work was redone")

    monkeypatch.setattr(experiment, "train", never)
    monkeypatch.setattr(experiment, "evaluate_suite", never)
    monkeypatch.setattr("robustlab.experiment.detect.detect", never)
    page.unlink()
    again = reproduce(TINY, only="pdm,standard", dataset="synthetic", out=str(out), results=str(page),
                      log=quiet)
    assert page.is_file() and again["recipes"] == status["recipes"]
    # the first call trained, evaluated and detected both; the second did nothing
    assert [call["phases"] for call in again["calls"]] == [6, 0]
    assert "The 2 calls of reproduce recorded" in page.read_text()


def test_a_longer_budget_resumes_the_run_and_evaluates_it_again(tmp_path):
    out = str(tmp_path / "runs")
    first = reproduce(TINY, only="standard", dataset="synthetic", out=out, results=None, log=quiet)
    longer = Budget("tiny", 128, epochs=2, monitor_images=0, suite_images=6, detect=TINY.detect)
    logs = []
    second = reproduce(longer, only="standard", dataset="synthetic", out=out, results=None, log=logs.append)
    assert any("resumed" in line and "epoch 2" in line for line in logs)
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "runs/standard/metrics.jsonl").open()
              if '"epoch"' in line]
    assert epochs[-2:] == [1, 2]
    train_1, train_2 = first["recipes"]["standard"]["train"], second["recipes"]["standard"]["train"]
    assert train_2["step"] == 2 * train_1["step"] and train_2["seconds"] > train_1["seconds"]
    assert second["recipes"]["standard"]["eval"]["step"] == train_2["step"]  # the new checkpoint's


def test_a_diverging_recipe_is_recorded_and_skipped_later(tmp_path, monkeypatch):
    def diverge(cfg, **kwargs):
        cfg.run_dir.mkdir(parents=True, exist_ok=True)  # as train does before its first step
        raise Diverged("non-finite loss at epoch 1, batch 3 in term(s) embedding_distance")

    monkeypatch.setattr(experiment, "train", diverge)
    out = str(tmp_path / "runs")
    status = reproduce(TINY, only="pivot", dataset="synthetic", out=out, results=None, log=quiet)
    assert status["recipes"]["pivot"]["train"]["status"] == "diverged"
    assert "eval" not in status["recipes"]["pivot"]
    monkeypatch.setattr(experiment, "train", lambda *a, **k: pytest.fail("retrained a diverged recipe"))
    logs = []
    reproduce(TINY, only="pivot", dataset="synthetic", out=out, results=None, log=logs.append)
    assert any("diverged before" in line and "delete" in line for line in logs)
    # as the message says: deleting the run directory tries again
    shutil.rmtree(tmp_path / "runs" / "pivot")
    calls = []
    monkeypatch.setattr(experiment, "train", lambda cfg, **k: calls.append(cfg.name) or diverge(cfg))
    reproduce(TINY, only="pivot", dataset="synthetic", out=out, results=None, log=quiet)
    assert calls == ["pivot"]


def test_an_interrupted_training_keeps_its_time_and_resumes(tmp_path, monkeypatch):
    out = str(tmp_path / "runs")
    real_train = experiment.train

    def stop_after_one_epoch(cfg, **kwargs):
        class Stop(Callback):
            def on_epoch(self, run, record):
                run.stop_requested = True  # as Ctrl-C does: save and stop
        return real_train(cfg, callbacks=[Stop()], **kwargs)

    longer = Budget("tiny", 128, epochs=2, monitor_images=0, suite_images=6, detect=TINY.detect)
    monkeypatch.setattr(experiment, "train", stop_after_one_epoch)
    with pytest.raises(Interrupted):
        reproduce(longer, only="standard", dataset="synthetic", out=out, results=None, log=quiet)
    record = json.loads((tmp_path / "runs/reproduce.json").read_text())["recipes"]["standard"]["train"]
    assert record["status"] == "interrupted" and record["seconds"] > 0
    monkeypatch.setattr(experiment, "train", real_train)
    logs = []
    status = reproduce(longer, only="standard", dataset="synthetic", out=out, results=None, log=logs.append)
    assert any("resumed" in line for line in logs)
    done = status["recipes"]["standard"]["train"]
    assert done["status"] == "done" and done["epochs"] == 2 and done["seconds"] > record["seconds"]


def test_a_run_trained_with_other_settings_is_not_taken_as_done(tmp_path):
    out = str(tmp_path / "runs")
    reproduce(TINY, only="standard", dataset="synthetic", out=out, results=None, log=quiet)
    other = Budget("tiny", train_images=64, epochs=1, monitor_images=0, suite_images=6, detect=TINY.detect)
    with pytest.raises(UserError, match="other settings \\(data.train_limit\\).*--out"):
        reproduce(other, only="standard", dataset="synthetic", out=out, results=None, log=quiet)


def test_an_evaluation_is_redone_for_other_weights_at_the_same_step(tmp_path):
    """The checkpoint's identity is its step and weights digest: other weights (as a retraining
    with another outcome gives) redo the evaluation; a file rewritten with the same weights does not."""
    from robustlab.train import load_checkpoint, save_checkpoint

    out = str(tmp_path / "runs")
    first = reproduce(TINY, only="standard", dataset="synthetic", out=out, results=None, log=quiet)
    last = tmp_path / "runs" / "standard" / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version")}, last)
    logs = []
    reproduce(TINY, only="standard", dataset="synthetic", out=out, results=None, log=logs.append)
    assert not any("papers suite" in line for line in logs)  # same weights, a new file: kept
    weight = next(iter(state["model"]))
    state["model"][weight] = state["model"][weight] + 1e-3
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version")}, last)
    second = reproduce(TINY, only="standard", dataset="synthetic", out=out, results=None, log=logs.append)
    assert any("papers suite" in line for line in logs)
    before, after = first["recipes"]["standard"]["eval"], second["recipes"]["standard"]["eval"]
    assert after["step"] == before["step"] and after["checkpoint"] != before["checkpoint"]


def test_other_training_errors_are_not_taken_for_divergence(tmp_path, monkeypatch):
    def broken(cfg, **kwargs):
        raise UserError("the teacher takes 3-channel images")

    monkeypatch.setattr(experiment, "train", broken)
    with pytest.raises(UserError, match="3-channel"):
        reproduce(TINY, only="atat", dataset="synthetic", out=str(tmp_path), results=None, log=quiet)


def test_standard_error_by_hand():
    assert standard_error(50, 100) == pytest.approx(5.0)  # sqrt(0.25 / 100) = 0.05
    assert standard_error(90, 10_000) == pytest.approx(0.3)


def test_verdicts_are_tests_holm_adjusted_over_the_page():
    from scipy.stats import binomtest

    from robustlab.eval.stats import Paired
    from robustlab.reproduce.verdicts import Comparison, decide

    # 1000 images: the higher model gets 60 images only it gets right, the lower 20: exact McNemar
    # p = binomtest(60, 80).pvalue; with 3 tests on the page, Holm multiplies the smallest by 3
    strong = Comparison(70.0, 66.0, paired=Paired(both=640, gained=60, lost=20, neither=280))
    p = binomtest(60, 80).pvalue
    weak = Comparison(66.5, 66.0, paired=Paired(both=650, gained=15, lost=10, neither=325))
    unpaired = Comparison(60.0, 85.0, images=(50, 50))  # z = -25 / 8.57 = -2.92, p 0.0035
    texts = decide([strong, weak, unpaired, None])
    assert texts[0] == f"holds (p {3 * p:.2g} after Holm)"
    assert texts[1].startswith("not resolved (p ") and "this budget detects" in texts[1]
    # the weak comparison's detectable difference: (1.96 + 0.84) * sqrt(25 / 1000 / 1000)
    assert f"detects {100 * 2.801585 * (25 / 1000) ** 0.5 / 1000 ** 0.5:.1f} points at 80% power and " \
        "alpha 0.05" in texts[1]
    # and at Holm's first-step level 0.05 / 3: z = 2.394 + 0.842, so 1.6 points
    strictest = 100 * 3.2354 * (25 / 1000) ** 0.5 / 1000 ** 0.5
    assert f"{strictest:.1f} points at 0.05/3, Holm's strictest" in texts[1]
    assert texts[2] == "reversed (p 0.0071 after Holm)"  # the second smallest p, times 2
    assert texts[3] == "not measured"
    # "at least as good": a non-inferiority test with a 2-point margin
    assert decide([Comparison(84.5, 85.0, at_least=True, images=(10_000, 10_000))])[0].startswith(
        "holds (non-inferior within 2 points)")
    assert decide([Comparison(80.0, 85.0, at_least=True, images=(10_000, 10_000))])[0].startswith("reversed")
    assert decide([Comparison(0.51, 0.50)])[0] == \
        "not resolved (no per-image outcomes to test: sign only, paper's way)"  # an AUC


def _fake_results(tmp_path) -> Results:
    def report(recipe, pgd, aa):
        path = tmp_path / f"{recipe}.json"
        path.write_text(json.dumps({
            "dataset": "fashion-mnist", "model": "small_cnn", "eps": 0.1, "worst_case": {"accuracy": aa},
            "attacks": [{"label": "PGD-20", "accuracy": pgd}, {"label": "AutoAttack", "accuracy": aa}],
            "masking": {"checks": [{"name": "zero_gradients", "status": "pass", "message": ""}]}}))
        return {"train": {"status": "done", "seconds": 60.0},
                "eval": {"report": str(path), "clean_accuracy": 0.9, "clean_images": 10_000, "images": 50,
                         "seconds": 30.0}}

    return Results({"budget": "small", "dataset": "fashion-mnist", "suite_images": 50, "recipes": {
        "madry": report("madry", 0.80, 0.76), "agkd_bml": report("agkd_bml", 0.60, 0.40)}})


def test_claims_are_checked_against_the_measured_numbers(tmp_path):
    results = _fake_results(tmp_path)
    claim = Claim("AGKD-BML", "Table 1", "more robust", "agkd_bml", "madry", ("PGD-20", "AutoAttack"))
    rows, comparisons = claim_rows(results, claim)
    # 60 vs 80 and 40 vs 76 on 50 images each: no per-image outcomes, so two binomial estimates
    assert [(c.high, c.low, c.paired, c.images) for c in comparisons] == [
        (60.0, 80.0, None, (50, 50)), (40.0, 76.0, None, (50, 50))]
    assert rows[0][3:5] == ["agkd_bml 60.0", "madry 80.0"]
    missing = claim_rows(results, Claim("ATAT", "Table 1", "x", "atat", "madry", ("PGD-20",)))
    assert missing[1] == [None]
    page = claims_section(results).text
    assert "AGKD-BML-7 is more robust" not in page  # agkd_bml_7 was not run: nothing reported for it
    assert "Reversed here: AGKD-BML is more robust than PGD adversarial training (PGD-20)" in page


def test_attacks_that_disagree_are_named(tmp_path):
    results = _fake_results(tmp_path)
    # PGD-20: 60 vs 80 reversed; AutoAttack made to agree with the claim: 96 vs 40
    results.reports["agkd_bml"]["eval"]["attacks"][1]["accuracy"] = 0.96
    results.reports["madry"]["eval"]["attacks"][1]["accuracy"] = 0.40
    import robustlab.reproduce.pages as pages
    claim = Claim("AGKD-BML", "Table 1", "more robust", "agkd_bml", "madry", ("PGD-20", "AutoAttack"))
    original = pages.CLAIMS
    pages.CLAIMS = (claim,)
    try:
        text = claims_section(results).text
    finally:
        pages.CLAIMS = original
    assert "disagree" in text and "more robust (PGD-20: reversed; AutoAttack: holds)" in text


def test_each_claim_goes_the_papers_way_in_every_table_that_has_both_numbers():
    """The claims encode what the papers show: wherever a transcribed table has both cells of a
    comparison the paper made, the paper's own numbers go the claimed way, and every claim not
    marked as standing in for another comparison has such a table."""
    for claim in CLAIMS:
        for column in claim.columns:
            if column in claim.extension or claim.lower_column:
                continue
            evidence = [(t.key, t.rows[claim.higher][column], t.rows[claim.lower][column]) for t in TABLES
                        if t.rows.get(claim.higher, {}).get(column) is not None
                        and t.rows.get(claim.lower, {}).get(column) is not None]
            for key, high, low in evidence:
                assert high > low or (claim.at_least and high >= low), (claim.text, column, key)
            assert evidence or claim.stands_in, (claim.text, column)


def test_the_page_shows_percent_for_accuracies(tmp_path):
    from robustlab.reproduce.pages import overview_section

    row = next(r for r in overview_section(_fake_results(tmp_path)).rows if r[0] == "madry")
    # clean 0.9 -> 90.0, PGD-20 0.80 -> 80.0, AutoAttack 0.76 -> 76.0, AA gap -4.0, 1 pass
    assert row[1] == "90.0" and row[3] == "80.0" and row[7] == "76.0" and row[9] == "-4.0"
    assert row[10] == "1 pass" and row[11] == "1.0"


def test_paper_tables_mark_a_different_setting(tmp_path):
    results = _fake_results(tmp_path)
    other = PaperTable("t", "P (x)", "Table 1", "c", "cifar10", "WRN-28-10", "8/255", "accuracy %",
                       ("clean", "PGD-20"), {"madry": {"clean": 86.2, "PGD-20": 45.6}, "atat": {}})
    section = paper_section(other, results)
    assert section.rows[0] == ["madry", "90.0 (86.2†)", "80.0 (45.6†)"]
    assert section.rows[1][0] == "atat (not run)"
    assert "compare the order of the rows" in section.text
    same = PaperTable("t", "P (x)", "Table 1", "c", "fashion-mnist", "small-cnn", "0.1", "accuracy %",
                      ("PGD-20",), {"madry": {"PGD-20": 79.0}})
    assert paper_section(same, results).rows[0] == ["madry", "80.0 (79.0)"]
    other_eps = PaperTable("t", "P (x)", "Table 1", "c", "fashion-mnist", "small-cnn", "8/255", "accuracy %",
                           ("PGD-20",), {"madry": {"PGD-20": 79.0}})
    assert paper_section(other_eps, results).rows[0] == ["madry", "80.0 (79.0†)"]


def test_verdicts_across_seeds_are_a_t_test_of_the_per_seed_differences():
    from robustlab.reproduce.verdicts import Comparison, decide

    # differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.464 on 2 degrees of freedom;
    # the t(2) cdf is 1/2 + t / (2 sqrt(t^2 + 2)): p = 2 (1/2 - 3.464 / (2 sqrt 14)) = 0.0742
    c = Comparison(72.0, 70.0, seeds=(1.0, 2.0, 3.0), images=(1000, 1000))
    assert c.p_value() == pytest.approx(1 - 12 ** 0.5 / 14 ** 0.5, abs=1e-6)
    text = decide([c])[0]
    assert text.startswith("not resolved (p 0.074 after Holm") and "3 seeds, differences sd 1.0" in text
    assert "images' standard error 2.0" in text  # sqrt(.72 .28 / 1000 + .7 .3 / 1000) = 2.03 points
    assert decide([Comparison(72.0, 70.0, seeds=(2.0, 2.1, 1.9, 2.0))])[0].startswith("holds")


def test_seeds_without_spread_are_no_variance_estimate():
    """Equal per-seed differences estimate no variance: not p = 0 (which 'holds' any claim), but
    the first seed's paired test of the images, or not testable without one."""
    from robustlab.eval.stats import Paired
    from robustlab.reproduce.verdicts import Comparison, decide

    equal = (2.0, 2.0, 2.0)
    assert not Comparison(72.0, 70.0, seeds=equal).testable
    assert decide([Comparison(72.0, 70.0, seeds=equal)])[0].startswith(
        "not resolved (3 seeds' differences are equal, no variance estimate")
    paired = Paired(both=690, gained=30, lost=10, neither=270)  # +2 points on 1,000 images
    c = Comparison(72.0, 70.0, seeds=equal, paired=paired)
    assert c.p_value() == pytest.approx(Comparison(72.0, 70.0, paired=paired).p_value())
    assert 0.001 < c.p_value() < 0.05


def test_reproduce_with_seeds_trains_each_recipe_once_per_seed(tmp_path):
    out, page = tmp_path / "runs", tmp_path / "results.md"
    status = reproduce(TINY, only="standard,madry", dataset="synthetic", out=str(out), results=str(page),
                       seeds=2, log=quiet)
    assert status["seeds"] == 2
    assert set(status["recipes"]) == {"standard", "standard_seed1", "madry", "madry_seed1"}
    from robustlab.train import load_checkpoint

    seeds = [load_checkpoint(out / name / "checkpoints" / "last.pt")["config"]["seed"]
             for name in ("madry", "madry_seed1")]
    assert seeds == [0, 1]
    with pytest.raises(UserError, match="--seeds=0 is out of range"):
        reproduce(TINY, only="madry", dataset="synthetic", out=str(out), results=None, seeds=0, log=quiet)


def test_results_combine_the_seeds_of_both_recipes(tmp_path):
    results = _fake_results(tmp_path)
    for name, pgd in (("madry_seed1", 0.78), ("agkd_bml_seed1", 0.66)):
        source = "madry" if name.startswith("madry") else "agkd_bml"
        report = json.loads(json.dumps(results.reports[source]["eval"]))
        report["attacks"][0]["accuracy"] = pgd
        results.reports[name] = {"eval": report}
        results.status["recipes"][name] = results.status["recipes"][source]
    results.status["seeds"] = 2
    c = results.comparison(("agkd_bml", "PGD-20"), ("madry", "PGD-20"), at_least=False)
    assert c.seeds == pytest.approx((60 - 80, 66 - 78)) and c.high == pytest.approx(63.0)
    assert c.low == pytest.approx(79.0) and c.images == (50, 50)


def _fake_detect(rng, shift: float, n: int = 100) -> dict:
    """A detect report on n images, every one broken by FGSM-0.1 and C&W; adversarial scores
    `shift` below the clean ones on average (lower density: more suspicious)."""
    def attack(index):
        clean = rng.normal(size=len(index))
        adv = clean - shift + rng.normal(size=len(index))
        from robustlab.detectors import detection_auc
        return {"successful": len(index), "auc": detection_auc(clean, adv), "mean_distortion": 0.1,
                "per_image": {"index": list(index), "clean": clean.tolist(), "adversarial": adv.tolist(),
                              "distortion": [0.1] * len(index)}}

    return {"images": n, "gray_box": {"FGSM-0.1": attack(range(n)), "C&W": attack(range(0, n, 2))},
            "white_box": {"final": attack(range(n))}}


def test_detection_numbers_are_compared_by_a_paired_bootstrap_over_the_images(tmp_path):
    import numpy as np

    from robustlab.reproduce.verdicts import decide

    rng = np.random.default_rng(0)
    results = _fake_results(tmp_path)
    results.detects = {"madry": _fake_detect(rng, 1.5), "agkd_bml": _fake_detect(rng, 0.0)}
    c = results.comparison(("madry", "gray AUC"), ("agkd_bml", "gray AUC"), at_least=False)
    assert c.high == pytest.approx(np.mean([results.detects["madry"]["gray_box"][k]["auc"]
                                            for k in ("FGSM-0.1", "C&W")]))
    assert len(c.resampled) == 2000 and np.mean(c.resampled) == pytest.approx(c.difference, abs=0.02)
    assert decide([c])[0] == "holds (p 0.001 after Holm)"  # all 2000 resamples above 0: 2 / 2001
    same = results.comparison(("agkd_bml", "white_d"), ("agkd_bml", "white_d"), at_least=False)
    assert set(same.resampled) == {0.0}  # one report against itself: every resample agrees
    assert decide([same])[0].startswith(
        "not resolved (p 1 after Holm; this budget detects a difference of 0.000")
    results.detects["madry"]["gray_box"]["C&W"].pop("per_image")  # an older report: its sign only
    old = results.comparison(("madry", "gray AUC"), ("agkd_bml", "gray AUC"), at_least=False)
    assert old.resampled == () and decide([old])[0].startswith("not resolved (no per-image outcomes")
    with pytest.raises(ValueError, match="margin is in accuracy points"):
        type(c)(0.6, 0.5, at_least=True, resampled=(0.1,))


def test_clean_accuracy_on_the_whole_split_is_not_paired_with_the_suites_images(tmp_path):
    from robustlab.eval.outcomes import pack

    results = _fake_results(tmp_path)
    for recipe in ("madry", "agkd_bml"):  # outcomes on the suite's 50 images; clean on 10,000
        results.reports[recipe]["eval"]["outcomes"] = {"images": {"count": 50, "digest": "d"},
                                               "clean": pack(torch.ones(50, dtype=torch.bool)), "robust": {}}
    c = results.comparison(("agkd_bml", "clean"), ("madry", "clean"), at_least=True)
    assert c.paired is None and c.images == (10_000, 10_000)


def test_claim_columns_by_hand():
    from robustlab.reproduce.claims import columns_of, compared_recipes

    # madry is the lower side of AGKD-BML Table 1 (PGD-20; AGKD-BML-7: + AutoAttack), ATAT's and
    # AAD's PGD claims (AAD: PGD-100, CW-100; both extend to AutoAttack)
    assert columns_of("madry") == columns_of("madry", extensions=False) == {
        "PGD-20", "PGD-100", "CW-100", "AutoAttack"}
    assert columns_of("bml") == {"PGD-20", "AutoAttack"} and columns_of("bml", extensions=False) == {"PGD-20"}
    # A3 is read on the lower side only (aad_madry PGD-20 vs aad_madry A3-PGD-20)
    assert columns_of("aad_madry", extensions=False) == {"PGD-20", "PGD-100", "CW-100", "A3-PGD-20"}
    assert columns_of("standard") == set() and columns_of("trades") == set()  # clean / detection; no claim
    assert {"trades", "mart", "pivot", "fast_at", "free_at", "siamese_rvl"}.isdisjoint(compared_recipes())
    assert len(compared_recipes()) == 16


def test_every_claim_and_medium_column_is_a_papers_suite_label():
    from robustlab.eval.suite import load_suite
    from robustlab.reproduce.claims import NOT_SUITE

    labels = {a.label for a in load_suite("papers").attacks}
    for claim in CLAIMS:
        for column in (*claim.columns, claim.lower_column or "clean"):
            assert column in labels or column in NOT_SUITE, (claim.text, column)
    for e in BUDGETS["medium"].claim_evaluations:
        assert set(e.columns) <= labels, e


def test_a_suite_keeps_only_the_columns_asked_in_its_order():
    from robustlab.eval.suite import load_suite

    papers = load_suite("papers")
    only = papers.only(["PGD-20", "FGSM", "iter_ll eps x1"])
    assert [a.label for a in only.attacks] == ["FGSM", "PGD-20", "iter_ll eps x1"]
    assert only.attacks[2].eps_factor == 1 and not only.masking and not only.curves
    assert only.fingerprint() != papers.only(["PGD-20"]).fingerprint()
    with pytest.raises(ValueError, match="no column.*PGD-21"):
        papers.only(["PGD-20", "PGD-21"])


def test_a_suite_sets_some_columns_parameters_without_touching_the_others():
    from robustlab.eval.suite import load_suite

    only = load_suite("papers").only(["PGD-20", "AutoAttack"])
    fast = only.with_params({"AutoAttack": {"impl": "robustlab", "precision": "bf16"}})
    assert [a.label for a in fast.attacks] == ["PGD-20", "AutoAttack"] and fast.attacks[0] == only.attacks[0]
    attack = fast.attacks[1].build(0.1)
    assert (attack.impl, attack.precision, attack.threat.eps) == ("robustlab", "bf16", 0.1)
    assert only.attacks[1].build(0.1).impl == "reference"  # the original suite is unchanged
    assert fast.fingerprint() != only.fingerprint()  # a resumed run never mixes the two
    with pytest.raises(ValueError, match="no column.*FGSM"):
        only.with_params({"FGSM": {"steps": 2}})


def test_the_medium_budget_detects_the_issues_differences():
    """PGD-20 must resolve 3 points and AutoAttack 6 (exact McNemar, alpha 0.05, 80% power) with a
    fifth of the images discordant; and the budget measures nothing no claim reads."""
    from robustlab.eval.stats import detectable_difference
    from robustlab.eval.suite import load_suite
    from robustlab.reproduce.run import evaluations

    medium = {e.phase: e for e in BUDGETS["medium"].claim_evaluations}
    assert "PGD-20" in medium["pgd"].columns and medium["autoattack"].columns == ("AutoAttack",)
    assert 100 * detectable_difference(medium["pgd"].images, 0.2) < 3
    assert 100 * detectable_difference(medium["autoattack"].images, 0.2) < 6
    assert BUDGETS["medium"].claims_only and not BUDGETS["medium"].extensions
    # AutoAttack on its faster impl (benchmarks/results.md), and only the AutoAttack column
    phases = {phase: suite for phase, suite, _, _ in evaluations("madry", BUDGETS["medium"])}
    assert phases["eval autoattack"].attacks[0].build(0.1).precision == "bf16"
    assert phases["eval pgd"].attacks[0].params == load_suite("papers").only(["PGD-20"]).attacks[0].params


CLAIMS_TINY = Budget("tiny", train_images=128, epochs=1, monitor_images=0, suite_images=0,
                     detect=TINY.detect, claims_only=True, extensions=False,
                     claim_evaluations=(ClaimEvaluation("pgd", 8, ("PGD-20",)),
                                        ClaimEvaluation("long", 4, ("PGD-100",))))


def test_a_claims_only_budget_measures_each_recipes_claim_columns(tmp_path):
    out, page = tmp_path / "runs", tmp_path / "results.md"
    status = reproduce(CLAIMS_TINY, only="standard,madry", dataset="synthetic", out=str(out),
                       results=str(page), log=quiet)
    madry, standard = status["recipes"]["madry"], status["recipes"]["standard"]
    assert set(madry) == {"train", "clean", "eval pgd", "eval long"}  # no papers suite
    assert (madry["eval pgd"]["images"], madry["eval long"]["images"]) == (8, 4)
    assert json.loads(Path(madry["eval long"]["report"]).read_text())["suite"] == "papers (PGD-100)"
    assert Path(madry["eval long"]["report"]).parent == out / "madry" / "claims_long"
    assert set(standard) == {"train", "clean", "detect"}  # its claims read clean and detection only
    results = Results(status)
    assert results.recipes == ["standard", "madry"] and results.images("madry", "PGD-100") == 4
    assert results.images("madry", "PGD-20") == 8 and results.value("madry", "worst case") is None
    assert results.value("standard", "clean") == pytest.approx(100 * standard["clean"]["clean_accuracy"])
    text = page.read_text()
    assert "PGD-20 on the first 8" in text and "does not run the papers suite" in text
    assert "PGD-20 on 8:" in text  # the power paragraph of "How this page was made"
    with pytest.raises(UserError, match="unknown recipe.*trades for this budget"):
        reproduce(CLAIMS_TINY, only="trades", dataset="synthetic", out=str(out), results=None, log=quiet)
    again = reproduce(CLAIMS_TINY, only="standard,madry", dataset="synthetic", out=str(out), results=None,
                      log=quiet)
    assert again["calls"][-1]["phases"] == 0
