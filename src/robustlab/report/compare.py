"""Runs side by side, like the papers' Table 1: one row per run, one column per attack, the
best value of each column marked (bold in Markdown, highlighted in HTML)."""

from __future__ import annotations

import html

from robustlab.report.fmt import pct
from robustlab.report.render import html_table, md_table, page, report_title


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


def compare_markdown(reports: list[dict]) -> str:
    columns, rows = comparison(reports)
    best = _best(rows)
    cells = [[report_title(r), *[("**" + pct(v) + "**") if v is not None and v == best[j] and len(rows) > 1
                          else pct(v) for j, v in enumerate(row)]] for r, row in zip(reports, rows)]
    return md_table(["run", *columns], cells) + "\n"


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
    return page("robustlab comparison", body)
