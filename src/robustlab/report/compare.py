"""Runs side by side, like the papers' Table 1: one row per run, one column per attack, the
best value of each column marked (bold in Markdown, highlighted in HTML); the paired test on the
same images; each run's indicators of attack failure; and in HTML the runs' accuracy-vs-eps curves
in one plot (from the clean point at eps 0) and their example strips one under another."""

from __future__ import annotations

import html

from robustlab.eval.outcomes import unpack
from robustlab.eval.stats import Paired
from robustlab.report.fmt import pct
from robustlab.report.render import (
    INDICATOR_HEAD,
    INDICATORS,
    curve_points,
    examples_strip,
    html_table,
    md_table,
    page,
    report_title,
    svg_lines,
)


def comparison(reports: list[dict]) -> tuple[list[str], list[list[float | None]]]:
    """Column labels (clean, every attack in first-seen order, worst case) and the values."""
    labels: list[str] = []
    for report in reports:
        labels += [a["label"] for a in report["attacks"] if a["label"] not in labels]
    columns = ["clean", *labels, "worst case"]
    rows = []
    for report in reports:
        by_label = {a["label"]: a["accuracy"] for a in report["attacks"]}
        rows.append([report["clean_accuracy"], *[by_label.get(label) for label in labels],
                     report["worst_case"]["accuracy"]])
    return columns, rows


def _best(rows: list[list[float | None]]) -> list[float | None]:
    columns = list(zip(*rows)) if rows else []
    return [max((v for v in col if v is not None), default=None) for col in columns]


INDICATORS_HEAD = ["run", "points counted robust", *INDICATOR_HEAD[2:8]]


def indicator_summary(reports: list[dict]) -> list[list[str]]:
    """A row per run: of the points counted robust (the probe's), on how many (distinct images over
    its attacks) each indicator of attack failure fired; "-" for a report without indicators."""
    rows = []
    for r in reports:
        section = r.get("indicators")
        if not section or section["probe"] is None:
            rows.append([report_title(r), "-", *["-"] * len(INDICATORS)])
            continue
        points = section["probe"]["points"]
        cells = []
        for key in INDICATORS:
            hit = {i for row in section["attacks"] for i in row["images"].get(key, [])}
            cells.append(f"{len(hit)} ({pct(len(hit) / points if points else 0.0, 1)})")
        rows.append([report_title(r), str(points), *cells])
    return rows


def compare_markdown(reports: list[dict]) -> str:
    columns, rows = comparison(reports)
    best = _best(rows)
    cells = [[report_title(r), *[("**" + pct(v) + "**") if v is not None and v == best[j] and len(rows) > 1
                          else pct(v) for j, v in enumerate(row)]] for r, row in zip(reports, rows)]
    return (md_table(["run", *columns], cells) + "\n\n" + paired_markdown(reports)
            + "\nIndicators of attack failure (Pintor et al. 2022)\n\n"
            + md_table(INDICATORS_HEAD, indicator_summary(reports)) + "\n")


def compare_html(reports: list[dict]) -> str:
    columns, rows = comparison(reports)
    best = _best(rows)
    cells = [[report_title(r), *[pct(v) for v in row]] for r, row in zip(reports, rows)]
    classes = [["", *["best" if v is not None and v == best[j] and len(rows) > 1 else ""
                      for j, v in enumerate(row)]] for row in rows]
    # every field of a report may come from the user (run names, suite files): escape them all
    notes = "".join("<li>" + html.escape(f"{report_title(r)}: {r['dataset']}, {r['model']}, recipe "
                                         f"{r.get('recipe', '-')}, eps {r['eps']:.4g}, {r['images']} "
                                         f"images, suite {r['suite']}") + "</li>" for r in reports)
    body = f"<h1>Comparison</h1>{html_table(['run', *columns], cells, classes)}<ul>{notes}</ul>"
    why = pairing(reports) if len(reports) > 1 else "not paired: one report"
    if why:
        body += f"<p>{html.escape(why)}</p>"
    else:
        paired_columns, paired_cells = paired_rows(reports)
        n = reports[0]["outcomes"]["images"]["count"]
        body += (f"<h2>Paired on the same {n} images</h2><p>Difference in points, 95% CI (Newcombe "
                 "1998, method 10), exact McNemar p.</p>"
                 + html_table(["runs", *paired_columns], paired_cells,
                              [["", *["text"] * len(paired_columns)] for _ in paired_cells]))
    curves = {report_title(r): [(float(x), v) for x, v in curve_points(r, "eps")]
              for r in reports if "eps" in r["curves"]}
    if curves:
        body += "<h2>Accuracy vs eps</h2>" + svg_lines(curves, "PGD-20 accuracy (eps 0: clean)", "eps")
    body += ("<h2>Indicators of attack failure (Pintor et al. 2022)</h2>"
             + html_table(INDICATORS_HEAD, indicator_summary(reports)))
    for r in reports:
        if r.get("examples"):
            body += f"<h2>{html.escape(report_title(r))}</h2>" + examples_strip(r)
    return page("robustlab comparison", body)


def pairing(reports: list[dict]) -> str | None:
    """Why these reports cannot be paired image by image, or None when they can."""
    for r in reports:
        if "outcomes" not in r:
            return (f"not paired: {report_title(r)}'s report ({r.get('schema', 'schema 1')}) has no "
                    "per-image outcomes; evaluate it again to pair it")
    first = reports[0]["outcomes"]["images"]
    for r in reports[1:]:
        images = r["outcomes"]["images"]
        if images != first:
            return (f"not paired: {report_title(r)} was evaluated on other images than "
                    f"{report_title(reports[0])} ({images['count']} images, digest {images['digest'][:12]} "
                    f"vs {first['count']}, {first['digest'][:12]}); evaluate both on the same data, "
                    "--limit and order to pair them")
    return None


def paired_rows(reports: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Each later run minus the first on the same images, per column both have: the difference
    in points, Newcombe's 95% interval and the exact McNemar p (eval/stats.py)."""
    reference = reports[0]
    n = reference["outcomes"]["images"]["count"]
    columns = ["clean", *[label for label in reference["outcomes"]["robust"]
                          if all(label in r["outcomes"]["robust"] for r in reports[1:])]]

    def mask(report: dict, column: str):
        out = report["outcomes"]
        return unpack(out["clean"] if column == "clean" else out["robust"][column], n)

    rows = []
    for r in reports[1:]:
        cells = []
        for column in columns:
            t = Paired.of(mask(reference, column), mask(r, column))
            lo, hi = t.ci()
            cells.append(f"{100 * t.difference:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] p {t.p_value:.2g}")
        rows.append([f"{report_title(r)} - {report_title(reference)}", *cells])
    return columns, rows


def paired_markdown(reports: list[dict]) -> str:
    """The paired table, or the one line saying why there is none."""
    why = pairing(reports) if len(reports) > 1 else "not paired: one report"
    if why:
        return why + "\n"
    columns, rows = paired_rows(reports)
    n = reports[0]["outcomes"]["images"]["count"]
    return (f"Paired on the same {n} images: difference in points, 95% CI (Newcombe), exact McNemar p\n\n"
            + md_table(["runs", *columns], rows) + "\n")
