"""The results pages of a reproduction: docs/results.md and .html (and .json with every number),
from reproduce.json and each run's report.json / detect.json.

Every table of the five papers that has a row for a recipe run here is shown in the paper's layout,
each cell "ours (paper)"; a dagger marks a table whose setting (data set, model, eps) is not ours,
so its numbers are for comparing orderings, not values. The claims section checks each paper's
claimed gain (`claims.CLAIMS`) under PGD and AutoAttack with the binomial noise of the images used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from robustlab.detectors import detection_auc
from robustlab.eval.outcomes import unpack
from robustlab.eval.stats import Paired, detectable_difference, paired_bootstrap
from robustlab.report.fmt import num
from robustlab.report.sections import Section, write_sections_page
from robustlab.reproduce.claims import CLAIMS, DETECTION, Claim, standard_error
from robustlab.reproduce.papers import PaperTable, tables_for
from robustlab.reproduce.plan import DETECTED, RECIPES, detect_flags, seed_name
from robustlab.reproduce.verdicts import ALPHA, MARGIN, Comparison, decide

DAGGER = "†"
OVERVIEW = ("FGSM", "PGD-20", "PGD-100", "CW-100", "A3-PGD-20", "AutoAttack")


def is_eval(phase: str) -> bool:
    """An evaluation phase of reproduce.json: "clean", the papers suite's "eval", "eval <claims>"."""
    return phase == "clean" or phase.startswith("eval")


class Results:
    """The numbers of one reproduction, looked up by recipe and column label."""

    def __init__(self, status: dict):
        self.status = status
        self.reports: dict[str, dict[str, dict]] = {}  # recipe -> eval phase -> its report
        self.detects: dict[str, dict] = {}
        for recipe, phases in status.get("recipes", {}).items():
            for phase, record in phases.items():
                report = Path(record.get("report", ""))
                if is_eval(phase) and report.is_file():
                    self.reports.setdefault(recipe, {})[phase] = json.loads(report.read_text())
            if "detect" in phases and Path(phases["detect"]["report"]).is_file():
                self.detects[recipe] = json.loads(Path(phases["detect"]["report"]).read_text())
        self.recipes = [r for r in RECIPES if r in self.reports or self._clean_record(r) is not None]

    def suite_report(self, recipe: str) -> dict | None:
        """The report of the whole papers suite (the worst case and the masking checks)."""
        return self.reports.get(recipe, {}).get("eval")

    def phase_with(self, recipe: str, column: str) -> str | None:
        """The first of the recipe's evaluation phases whose report has this column."""
        return next((phase for phase, report in self.reports.get(recipe, {}).items()
                     if any(a["label"] == column for a in report["attacks"])), None)

    def report_with(self, recipe: str, column: str) -> dict | None:
        phase = self.phase_with(recipe, column)
        return None if phase is None else self.reports[recipe][phase]

    def _clean_record(self, recipe: str) -> dict | None:
        """The reproduce.json record with the recipe's clean accuracy: its own phase, or the papers
        suite's (whose report must still be there)."""
        phases = self.status.get("recipes", {}).get(recipe, {})
        return phases.get("clean") or (phases["eval"] if self.suite_report(recipe) is not None else None)

    def value(self, recipe: str, column: str) -> float | None:
        """Accuracy in percent, or a detection number (AUC, distortion d, Davies-Bouldin)."""
        if column == "clean":
            record = self._clean_record(recipe)
            return None if record is None else 100 * record["clean_accuracy"]
        if column == "worst case":
            report = self.suite_report(recipe)
            return None if report is None else 100 * report["worst_case"]["accuracy"]
        if column not in DETECTION:
            report = self.report_with(recipe, column)
            return None if report is None else next(100 * a["accuracy"] for a in report["attacks"]
                                                    if a["label"] == column)
        detect = self.detects.get(recipe)
        if detect is None:
            return None
        gray = detect.get("gray_box", {})
        if column in gray:
            return gray[column]["auc"]
        if column == "gray AUC":
            aucs = [v["auc"] for v in gray.values() if v["auc"] is not None]
            return sum(aucs) / len(aucs) if aucs else None
        return {"white_d": detect.get("white_box", {}).get("final", {}).get("mean_distortion"),
                "black_auc": detect.get("black_box", {}).get("auc"),
                "davies_bouldin": detect.get("davies_bouldin")}.get(column)

    def resampler(self, recipe: str, column: str) -> tuple[int, Callable[[np.ndarray], float]] | None:
        """(the detection images, `column` as `value` computes it with image i counted w[i] times)
        from the detect report's per-image scores; None for an accuracy column or an older report."""
        detect = self.detects.get(recipe)
        if detect is None or column not in DETECTION:
            return None
        gray = detect.get("gray_box", {})
        if column == "white_d":
            parts = [detect.get("white_box", {}).get("final", {})]
        elif column == "gray AUC" or column in gray:
            parts = [v for k, v in gray.items() if column in ("gray AUC", k) and v["auc"] is not None]
        else:
            return None
        if not parts or any("per_image" not in part for part in parts):
            return None
        scores = [{k: np.asarray(v) for k, v in part["per_image"].items()} for part in parts]

        def distortion(w: np.ndarray) -> float:
            kept = w[scores[0]["index"]]
            return float(np.average(scores[0]["distortion"], weights=kept)) if kept.sum() else np.nan

        def mean_auc(w: np.ndarray) -> float:
            aucs = [detection_auc(p["clean"], p["adversarial"], w[p["index"]]) for p in scores]
            return np.nan if np.isnan(aucs).all() else float(np.nanmean(aucs))

        return int(detect["images"]), distortion if column == "white_d" else mean_auc

    def images(self, recipe: str, column: str) -> int | None:
        """How many images an accuracy column was measured on (None: not an accuracy, or not measured)."""
        if column in DETECTION:
            return None
        if column == "clean":
            record = self._clean_record(recipe)
            return None if record is None else record["clean_images"]
        phase = self.phase_with(recipe, column)
        return None if phase is None else self.status["recipes"][recipe][phase]["images"]

    def outcome(self, recipe: str, column: str):
        """(images digest, the per-image mask of `column`) from the report's outcomes, or None
        (a schema-1 report, or a column without one)."""
        report = self.report_with(recipe, column) if column != "clean" else self.suite_report(recipe)
        outcomes = None if report is None else report.get("outcomes")
        if outcomes is None:
            return None
        if column == "clean" and self.images(recipe, column) != outcomes["images"]["count"]:
            return None  # clean accuracy is on the whole test split, the outcomes on the suite's images
        packed = outcomes["clean"] if column == "clean" else outcomes["robust"].get(column)
        if packed is None:
            return None
        images = outcomes["images"]
        return images["digest"], unpack(packed, images["count"])

    def comparison(self, high: tuple[str, str], low: tuple[str, str], at_least: bool) -> Comparison | None:
        """The test of (recipe, column) `high` against `low`: across seeds when there are two or
        more of both, else paired on the same images when both reports have their per-image
        outcomes, else two independent binomial estimates."""
        values = [self.value(*cell) for cell in (high, low)]
        if None in values:
            return None
        seeded = [(a, b) for a, b in ((self.value(seed_name(high[0], k), high[1]),
                                       self.value(seed_name(low[0], k), low[1]))
                                      for k in range(self.status.get("seeds", 1)))
                  if a is not None and b is not None]
        if len(seeded) >= 2:
            means = [sum(v) / len(seeded) for v in zip(*seeded)]
            single = self._single(high, low, values, at_least)
            return Comparison(*means, at_least=at_least, paired=single.paired, images=single.images,
                              seeds=tuple(a - b for a, b in seeded), resampled=single.resampled)
        return self._single(high, low, values, at_least)

    def _single(self, high: tuple[str, str], low: tuple[str, str], values: list[float],
                at_least: bool) -> Comparison:
        """One seed's comparison: paired when the outcomes allow (a paired bootstrap for a detection
        number), else two binomial estimates."""
        ra, rb = self.resampler(*high), self.resampler(*low)
        if ra is not None and rb is not None and ra[0] == rb[0]:  # both on the first n test images
            resampled = tuple(paired_bootstrap(ra[1], rb[1], ra[0]))
            return Comparison(*values, at_least=at_least, resampled=resampled)
        a, b = self.outcome(*high), self.outcome(*low)
        if a is not None and b is not None and a[0] == b[0]:
            return Comparison(*values, at_least=at_least, paired=Paired.of(b[1], a[1]))
        counts = [self.images(*cell) for cell in (high, low)]
        return Comparison(*values, at_least=at_least, images=None if None in counts else tuple(counts))

    def missing(self, recipe: str) -> str:
        """Why a recipe has no numbers: diverged, or not run."""
        train = self.status["recipes"].get(recipe, {}).get("train", {})
        return "diverged" if train.get("status") == "diverged" else "not run"

    def setting(self) -> tuple[str, str, float]:
        """(data set, model, eps) of this reproduction."""
        report = next((r for reports in self.reports.values() for r in reports.values()), {})
        return report.get("dataset", "?"), report.get("model", "?"), report.get("eps", 0.0)




def _fmt(value: float | None, accuracy: bool = True) -> str:
    """Accuracies (already in percent) with one decimal; AUCs, distortions and indices with three."""
    return num(value, 1 if accuracy else 3)


def _is_accuracy(column: str, metric: str = "accuracy") -> bool:
    return "accuracy" in metric and column not in DETECTION


def _parse_eps(text: str) -> float | None:
    """A paper's budget as written ("8/255", "0.3"), or None when it has none ("none (clean)")."""
    try:
        top, _, bottom = text.partition("/")
        return float(top) / float(bottom or 1)
    except ValueError:
        return None


def paper_section(table: PaperTable, results: Results) -> Section:
    """One paper table in its own layout, each cell `ours (paper)`."""
    dataset, model, eps = results.setting()
    their_eps = _parse_eps(table.eps)
    same = (table.dataset == dataset and table.model.lower().replace("-", "") == model.replace("_", "")
            and (their_eps is None or abs(their_eps - eps) < 1e-6))
    mark = "" if same else DAGGER
    rows = []
    for recipe, paper_row in table.rows.items():
        cells = []
        for c in table.columns:
            accuracy = _is_accuracy(c, table.metric)
            ours, theirs = _fmt(results.value(recipe, c), accuracy), _fmt(paper_row.get(c), accuracy)
            cells.append(f"{ours} ({theirs}{mark})")
        rows.append([recipe + ("" if recipe in results.recipes else f" ({results.missing(recipe)})"), *cells])
    where = (f"Same setting as the paper ({table.dataset}, {table.model}, eps {table.eps})." if same else
             f"{DAGGER} The paper's numbers are for {table.dataset}, {table.model}, eps {table.eps}; ours "
             f"for {dataset}, {model}, eps {eps:.4g}: compare the order of the rows, not the values.")
    return Section(f"{table.paper.split(' (')[0]} {table.table}: {table.caption}",
                   f"{table.metric}, ours (paper). {where} {table.notes}",
                   head=["recipe", *table.columns], rows=rows)


def overview_section(results: Results) -> Section:
    status = results.status["recipes"]
    rows = []
    for recipe in RECIPES:
        phases = status.get(recipe, {})
        train = phases.get("train", {})
        if train.get("status") == "diverged":
            rows.append([recipe, "diverged", *["-"] * (len(OVERVIEW) + 3),
                         f"{train['seconds'] / 60:.1f}", "-"])
            continue
        if recipe not in results.recipes:
            continue
        gap = _gap(results, recipe)
        evaluated = sum(v["seconds"] for k, v in phases.items() if is_eval(k))
        rows.append([recipe, _fmt(results.value(recipe, "clean")),
                     *[_fmt(results.value(recipe, c)) for c in OVERVIEW],
                     _fmt(results.value(recipe, "worst case")),
                     "-" if gap is None else f"{gap:+.1f}", _masking_cell(results.suite_report(recipe)),
                     f"{train.get('seconds', 0) / 60:.1f}", f"{evaluated / 60:.1f}"])
    return Section(
        "Every recipe",
        f"Accuracy in percent: clean on the whole test split, {_images_text(results.status)}, white-box, "
        f"L-inf eps {results.setting()[2]:.4g}. Worst case: an image counts as robust only if every attack "
        "of the papers suite fails on it. AA gap: AutoAttack minus PGD-20 (a large negative gap: PGD "
        "overestimates the robustness; on different images when the budget measures them on different "
        "numbers). Masking: the gradient-masking checks of the papers suite that did not pass. Minutes: "
        "wall time of training (with any teacher, source or image bank it built first) and of the suites. "
        "All recipes train for the same epochs; free_at replays each batch m = 8 times, so it takes 8x "
        "the optimizer steps of the others (its paper divides the epochs by m to match standard "
        "training's cost).",
        head=["recipe", "clean", *OVERVIEW, "worst case", "AA gap", "masking", "train min", "eval min"],
        rows=rows)


def _masking_cell(report: dict | None) -> str:
    """The checks that did not pass, or how many passed; "-" without a papers-suite report."""
    if report is None:
        return "-"
    checks = report.get("masking", {}).get("checks", [])
    flagged = [c["name"] for c in checks if c["status"] not in ("pass", "skip")]
    return ", ".join(flagged) or f"{sum(c['status'] == 'pass' for c in checks)} pass"


def _images_text(status: dict) -> str:
    """Which test images the attacks ran on, with the binomial standard error that allows."""
    parts = []
    if status.get("suite_images"):
        n = status["suite_images"]
        parts.append(f"the papers suite on the first {n:,} test images (binomial standard error up to "
                     f"+-{standard_error(50, n):.1f} points)")
    for e in status.get("claim_evaluations", []):
        parts.append(f"{', '.join(e['columns'])} on the first {e['images']:,} (up to "
                     f"+-{standard_error(50, e['images']):.1f}), each only for the recipes whose claims "
                     "read it")
    return "; ".join(parts)


def _power_text(status: dict) -> str:
    """Why a budget's claim evaluations have the images they have: the paired difference each
    detects (exact McNemar at alpha 0.05, 80% power) for a typical share of discordant images."""
    parts = [f"{e['columns'][0]} on {e['images']:,}: {100 * detectable_difference(e['images'], 0.2):.1f} "
             f"points ({100 * detectable_difference(e['images'], 0.1):.1f})"
             for e in status.get("claim_evaluations", [])]
    if not parts:
        return ""
    return (" How the images were chosen: the paired test's power depends on the share of images on "
            "which two models disagree (the share seen here is in each claim's detectable difference "
            "below). The smallest difference each evaluation detects at 80% power (alpha "
            "0.05, two-sided) when 20% of the images are discordant (10% in brackets): "
            + "; ".join(parts) + ". Holm's adjustment over the page holds the first claim it decides to "
            "alpha 0.05 / m, where these differences grow by about 40% for m = 30 (each undecided claim "
            "below gives both). Each attack's images are the most its cost allows in 2 hours on 2 CPU "
            "cores with small's training: PGD-20 costs 21 passes an image, PGD-100 and CW-100 101, "
            "Cascade's iterative attacks about 30 at eps 0.1, AutoAttack thousands on a robust model "
            "(benchmarks/results.md), so AutoAttack is run only where a paper claims it."
            + _params_text(status) + " The detection phase keeps small's settings.")


def _params_text(status: dict) -> str:
    """The attack parameters a budget sets over the papers suite's (AutoAttack's faster impl)."""
    set_ = [f"{label} with {', '.join(f'{k}={v}' for k, v in params.items())}"
            for e in status.get("claim_evaluations", []) for label, params in e.get("params", {}).items()]
    return (f" This budget runs {'; '.join(set_)}, over the papers suite's own parameters "
            "(benchmarks/results.md compares AutoAttack's impls image by image)." if set_ else "")


def _gap(results: Results, recipe: str) -> float | None:
    aa, pgd = results.value(recipe, "AutoAttack"), results.value(recipe, "PGD-20")
    return None if aa is None or pgd is None else aa - pgd


def claim_rows(results: Results, claim: Claim) -> tuple[list[list[str]], list[Comparison | None]]:
    """One row per measured column (source, claim, column, the two cells; the verdict is filled in
    by `claims_section`, which tests every comparison on the page together) and its comparison."""
    rows, comparisons = [], []
    text = claim.text + (f" ({claim.stands_in})" if claim.stands_in else "")
    for column in claim.columns:
        low_column = claim.lower_column or column
        high, low = results.value(claim.higher, column), results.value(claim.lower, low_column)
        left = f"{claim.higher} {column}" if claim.lower_column else claim.higher
        right = f"{claim.lower} {low_column}" if claim.lower_column else claim.lower
        measured_by = column + (" (not in the paper)" if column in claim.extension else "")
        comparisons.append(results.comparison((claim.higher, column), (claim.lower, low_column),
                                              claim.at_least))
        rows.append([f"{claim.paper} {claim.source}", text, measured_by,
                     f"{left} {'-' if high is None else _fmt(high, _is_accuracy(column))}",
                     f"{right} {'-' if low is None else _fmt(low, _is_accuracy(low_column))}", ""])
    return rows, comparisons


def _goes_paper_way(row: list[str]) -> bool:
    """The measured higher cell is above the lower one (ties count for "at least" claims)."""
    high, low = float(row[3].rsplit(" ", 1)[1]), float(row[4].rsplit(" ", 1)[1])
    return high > low or (high == low and row[5].startswith("holds"))


def _kind(verdict_text: str) -> str:
    kinds = ("holds", "reversed", "not resolved", "not measured")
    return next(k for k in kinds if verdict_text.startswith(k))


def claims_section(results: Results) -> Section:
    built = [(claim, *claim_rows(results, claim)) for claim in CLAIMS]
    rows = [row for _, claim_rows_, _ in built for row in claim_rows_]
    for row, text in zip(rows, decide([c for _, _, comparisons in built for c in comparisons])):
        row[5] = text
    per_claim = [(claim, claim_rows_) for claim, claim_rows_, _ in built]
    measured = [r for r in rows if _kind(r[5]) != "not measured"]
    count = {k: sum(_kind(r[5]) == k for r in measured) for k in ("holds", "reversed", "not resolved")}
    text = (f"Each paper's claimed gain, measured here: of {len(measured)} comparisons with both numbers, "
            f"{count['holds']} hold, {count['reversed']} are reversed and {count['not resolved']} are within "
            f"the noise ({len(rows) - len(measured)} not measured). Each accuracy comparison is a test: "
            "paired on the same images when both reports keep per-image outcomes (the exact McNemar test; "
            f"an \"at least as good\" claim is a two-sided test against the non-inferiority boundary, "
            f"{MARGIN:g} points worse), else a z-test of two independent binomial estimates; the p-values "
            f"are adjusted by Holm over every comparison on this page, and a claim is decided at alpha "
            f"{ALPHA:g}. A comparison not resolved says the difference this budget detects at 80% power. "
            "AUC and the white-box distortion are tested by a paired bootstrap over the detection images "
            "(both models on the same 2,000 resamples) when the detect reports keep their per-image scores, "
            "else shown by sign only. AutoAttack columns marked \"not "
            "in the paper\" are robustlab's check of a claim the paper makes under PGD"
            + (" (this budget does not measure them: it spends AutoAttack where a paper claims it)."
               if results.status.get("extensions") is False else "."))
    paper_way = sum(_goes_paper_way(r) for r in measured)
    text += (f" In point estimates alone, {paper_way} of {len(measured)} comparisons go the paper's way.")
    failed = [f"{claim.text} ({', '.join(r[2] for r in claim_rows_ if _kind(r[5]) == 'reversed')})"
              for claim, claim_rows_ in per_claim if any(_kind(r[5]) == "reversed" for r in claim_rows_)]
    if failed:
        text += " Reversed here: " + "; ".join(failed) + "."
    split = []
    for claim, claim_rows_ in per_claim:
        kinds = {r[2].split(" (")[0]: _kind(r[5]) for r in claim_rows_}
        aa = kinds.pop("AutoAttack", None)
        others = {c: k for c, k in kinds.items() if k != "not measured"}
        if aa not in (None, "not measured") and any(k != aa for k in others.values()):
            by_column = ", ".join(f"{c}: {k}" for c, k in others.items())
            split.append(f"{claim.text} ({by_column}; AutoAttack: {aa})")
    if split:
        text += " The attacks disagree (a gain seen under PGD may be gradient masking or noise): " + \
            "; ".join(split) + "."
    return Section("Do the papers' claims hold here?", text,
                   head=["source", "claim", "measured by", "should be higher", "should be lower", "here"],
                   rows=rows)


def detection_section(results: Results) -> Section | None:
    recipes = [r for r in DETECTED if r in results.detects]
    if not recipes:
        return None
    rows = []
    for recipe in recipes:
        d = results.detects[recipe]
        gray = d.get("gray_box", {})
        white = d.get("white_box", {}).get("final", {})
        black = d.get("black_box", {})
        rows.append([recipe, f"{100 * d['clean_accuracy']:.2f}",
                     *[f"{_fmt(v['auc'], False)} ({v['successful']})" for v in gray.values()],
                     f"{_fmt(white.get('mean_distortion'), False)} ({white.get('successful', 0)})",
                     f"{_fmt(black.get('auc'), False)} ({black.get('successful', 0)})",
                     _fmt(d.get("davies_bouldin"), False)])
    first = results.detects[recipes[0]]
    settings = results.status["recipes"][recipes[0]]["detect"]["settings"]
    return Section(
        "KDE detection of the PDM family (PDM Tables 1-4, Fig. 2)",
        f"`robustlab detect RUN {detect_flags(settings)}`: the first {first['images']} test images, eps "
        f"{first['eps']:.4g}. Gray-box AUC per attack, with the number of successful adversarial "
        "examples it rests on in brackets (an AUC on a handful of examples says little); white-box d "
        "(higher: the attacker must distort more); black-box AUC through a distilled proxy; Davies-"
        "Bouldin index of the clean embeddings (lower: tighter classes).",
        head=["recipe", "clean %", *first.get("gray_box", {}).keys(), "white-box d", "black-box AUC",
              "Davies-Bouldin"], rows=rows)


def masking_section(results: Results) -> Section:
    rows = []
    for recipe in results.recipes:
        report = results.suite_report(recipe) or {}
        for check in report.get("masking", {}).get("checks", []):
            if check["status"] not in ("pass", "skip"):
                rows.append([recipe, check["name"], check["status"], check["message"]])
    if not any(results.suite_report(r) for r in results.recipes):
        text = ("This budget does not run the papers suite, whose gradient-masking checks this section "
                "reports: the small budget's page has them.")
    else:
        text = ("Every check passed for every recipe: no sign of gradient masking." if not rows else
                "The gradient-masking checks that did not pass (each report.html explains the checks); a "
                "model listed here may be less robust than its PGD numbers say.")
    return Section("Gradient-masking checks", text, head=["recipe", "check", "status", "message"], rows=rows)


def time_section(results: Results) -> Section:
    phases = ("train", "eval", "detect")
    totals = {p: 0.0 for p in phases}
    for recipe_phases in results.status["recipes"].values():
        for p in phases:
            totals[p] += sum(v.get("seconds", 0.0) for k, v in recipe_phases.items()
                             if (is_eval(k) if p == "eval" else k == p))
    total = sum(totals.values())
    return Section(
        "Time", f"Budget {results.status['budget']}: {results.status.get('about', '')}. Recorded compute "
        f"time of every phase, summed over the recipes (minutes): training {totals['train'] / 60:.1f} "
        f"(teachers, sources and image banks included), suites {totals['eval'] / 60:.1f}, detection "
        f"{totals['detect'] / 60:.1f}; total {total / 60:.1f}. " + _calls_line(results.status))


def _calls_line(status: dict) -> str:
    """How long the calls of reproduce took, and what the last one did."""
    last = status.get("last_call_seconds", 0) / 60
    calls = status.get("calls", [])
    if not calls:
        return f"The last call of reproduce took {last:.1f} min."
    total = sum(c["seconds"] for c in calls) / 60
    counted = "1 call" if len(calls) == 1 else f"{len(calls)} calls"
    return (f"The {counted} of reproduce recorded in reproduce.json took {total:.1f} min of wall time "
            f"together; the last took {last:.1f} min and ran {calls[-1]['phases']} phases (a call that finds "
            "everything done only rewrites these pages).")


def write_pages(status: dict, out_dir: Path, results_md: Path) -> list[Path]:
    """docs/results.md, .html and .json for the reproduction in `out_dir`."""
    results = Results(status)
    dataset, model, eps = results.setting()
    claims = claims_section(results)
    sections = [
        Section("How this page was made",
                f"`robustlab reproduce --budget {status['budget']}` on {dataset} with {model}, L-inf eps "
                f"{eps}, every recipe from configs/<recipe>_fmnist.yaml with the same model, data and "
                f"epochs, runs in {out_dir}; generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
                "The text and tables are generated from the numbers; do not edit by hand, run reproduce "
                "again." + _power_text(status)),
        overview_section(results), claims, masking_section(results)]
    detection = detection_section(results)
    if detection is not None:
        sections.append(detection)
    tables = tables_for(results.recipes)
    measured = [t for t in tables if any(results.value(r, c) is not None for r in t.rows for c in t.columns)]
    sections += [paper_section(t, results) for t in measured]
    if len(measured) < len(tables):
        sections.append(Section(
            "Paper tables with nothing measured here",
            "These tables have rows for the recipes run, but columns this command does not measure "
            "(black-box transfer between networks, attacks outside the papers suite): "
            + "; ".join(f"{t.paper.split(' (')[0]} {t.table} ({t.caption})"
                        for t in tables if t not in measured)
            + ". `robustlab explain --what transfer` and `robustlab attack` measure them."))
    sections.append(time_section(results))
    values = {r: {a["label"]: a["accuracy"] for report in reversed(results.reports.get(r, {}).values())
                  for a in report["attacks"]} for r in results.recipes}
    numbers = {"status": status, "values": values}
    title = f"robustlab results: every recipe on {dataset} ({status['budget']} budget)"
    files = write_sections_page(title, sections, numbers, results_md.parent, stem=results_md.stem)
    return [files["md"], files["html"], files["json"]]
