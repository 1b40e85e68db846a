"""A report dict (schema.json, docs/report.md) as report.json, report.md and report.html.

The HTML is one self-contained file: inline CSS and SVG plots, no script, no network, so it
opens offline and can be mailed as is.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path

from robustlab.eval.indicators import NAMES as INDICATORS
from robustlab.io import atomic_write_text
from robustlab.report.fmt import pct

SCHEMA_FILE = Path(__file__).with_name("schema.json")


def write_report(report: dict, out_dir: Path) -> dict[str, Path]:
    """Write the three files atomically; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "report.json", "md": out_dir / "report.md", "html": out_dir / "report.html"}
    texts = {"json": json.dumps(report, indent=1) + "\n", "md": markdown(report), "html": to_html(report)}
    for kind, path in files.items():
        atomic_write_text(path, texts[kind])
    return files


def report_title(report: dict) -> str:
    """What the report is about: the robustlab run, or the name given to any other model."""
    return report.get("run") or report["name"]


def trained_text(trained: dict) -> str:
    """`epoch 15 of 15, step 7020, training finished` (or `... NOT the end of training`)."""
    where = f"epoch {trained['epoch']} of {trained['epochs']}" + (
        f" and {trained['batch']} batches" if trained.get("batch") else "")
    end = "training finished" if trained["finished"] else "NOT the end of training"
    return f"{where}, step {trained['step']}, {end}"


def _header(report: dict) -> str:
    recipe = f", recipe {report['recipe']}" if "recipe" in report else ""
    layer = (f"; feature map of layer {report['feature_layer']} (forward hook)"
             if report.get("feature_layer") else "")
    checkpoint = (f"; checkpoint {report['checkpoint']} ({trained_text(report['trained'])})"
                  if "trained" in report else "")
    return (f"{report['dataset']}, {report['model']}{recipe}; L-inf eps {report['eps']:.4g}; "
            f"{report['images']} test images; suite {report['suite']}{layer}{checkpoint}")


def attack_rows(report: dict) -> list[list[str]]:
    """The attack table: clean, each attack run, then each entry skipped with its reason."""
    rows = [["clean", "-", pct(report["clean_accuracy"]), "-", "-", "-", "-"]]
    for a in report["attacks"]:
        rows.append([a["label"], f"{a['eps']:.4g}", pct(a["accuracy"]), pct(a["success_rate"], 1),
                     f"{a['linf_mean']:.4f}", f"{a['l2_mean']:.3f}", f"{a['seconds']:.1f} s"])
    for a in report.get("skipped", []):
        rows.append([a["label"], f"{a['eps']:.4g}" if "eps" in a else "-", f"skipped: {a['reason']}",
                     "-", "-", "-", "-"])
    return rows


def _attack_classes(report: dict) -> list[list[str]]:
    """HTML classes of `attack_rows`: a skipped entry's reason is greyed, left-aligned text."""
    measured = [[""] * len(ATTACK_HEAD)] * (1 + len(report["attacks"]))
    return measured + [["", "", "text skip", "", "", "", ""]] * len(report.get("skipped", []))


ATTACK_HEAD = ["attack", "eps", "accuracy", "success rate", "mean L-inf", "mean L2", "time"]


def md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _worst_line(report: dict) -> str:
    worst = report["worst_case"]
    if worst["accuracy"] is None:
        return "No attack entered the worst case."
    by = ", ".join(f"{k} {v}" for k, v in worst["broken_by"].items()) or "none"
    return (f"Worst case over {len(worst['attacks'])} attacks (per image: correct under all of "
            f"them): **{pct(worst['accuracy'])}**. Images first broken by: {by}.")


INDICATOR_HEAD = ["attack", "robust points", *(name.replace("_", " ") for name in INDICATORS),
                  "robust on a failed attack"]


def indicator_rows(report: dict) -> list[list[str]]:
    """Per attack: how many of its robust points each indicator fires on ("-": not recorded for
    this attack), and how many rest on a failed attack."""
    def share(count: int | None, points: int) -> str:
        return "-" if count is None else f"{count} ({pct(count / points if points else 0.0, 1)})"

    return [[row["label"], str(row["robust_points"]),
             *[share(row["counts"].get(key), row["robust_points"]) for key in INDICATORS],
             share(row["failed"], row["robust_points"])] for row in report["indicators"]["attacks"]]


def indicator_probe_line(report: dict) -> str:
    probe = report["indicators"]["probe"]
    if probe is None:
        return ""
    limits = report["indicators"]["thresholds"]
    mean = "-" if probe["unstable_mean"] is None else f"{probe['unstable_mean']:.3f}"
    return (f"Probe of the {probe['points']} points counted robust (worst case): zero or non-finite input "
            f"gradient on {probe['counts']['unavailable_gradients']}, unstable predictions (mean relative "
            f"margin change under {limits['draws']} uniform perturbations of +-eps/2 above "
            f"{limits['unstable']}) on {probe['counts']['unstable_predictions']} (mean change {mean}), "
            f"still robust to PGD-20 with the whole [0, 1] box as budget: "
            f"{probe['counts']['unconstrained_failure']}. "
            f"({report['indicators']['seconds']:.1f} s)")


def indicator_next(report: dict) -> list[str]:
    """The commands a flagged report suggests: AutoAttack on the same images when any indicator
    fired, its EOT version (rand) when predictions were unstable."""
    fired = {key for row in report["indicators"]["attacks"] for key, count in row["counts"].items() if count}
    if not fired:
        return []
    where = report.get("checkpoint")
    if where is None:  # your own model: the Python call
        lines = [f"Next: robustlab.evaluate(model, ..., suite=\"autoattack\", limit={report['images']})"]
    else:
        lines = [f"Next: robustlab eval {where} --suite autoattack --limit {report['images']}"]
    if "unstable_predictions" in fired:
        lines.append(f"Next (randomness): robustlab attack {where or 'RUN'} --attack autoattack version=rand "
                     f"--limit {report['images']}")
    return lines


def indicators_md(report: dict) -> list[str]:
    if not report.get("indicators"):
        return []
    return ["## Indicators of attack failure (Pintor et al. 2022)", "",
            md_table(INDICATOR_HEAD, indicator_rows(report)), "", indicator_probe_line(report), "",
            *[f"- {line}" for line in report["indicators"]["verdict"]], "",
            *[f"`{line}`  " for line in indicator_next(report)], ""]


def curve_points(report: dict, name: str) -> list[tuple[str, float]]:
    """A curve's (x, accuracy) points; the eps curve starts at the clean accuracy (eps 0)."""
    points = list(report["curves"][name].items())
    return ([("0", report["clean_accuracy"])] if name == "eps" else []) + points


def markdown(report: dict) -> str:
    parts = [f"# Robustness report: {report_title(report)}", "", _header(report), "",
             md_table(ATTACK_HEAD, attack_rows(report)), "", _worst_line(report), ""]
    for name in report["curves"]:
        parts += [f"## Accuracy vs {'PGD steps' if name == 'steps' else 'eps'}", "",
                  md_table([name, "accuracy"], [[k, pct(v)] for k, v in curve_points(report, name)]), ""]
    if report.get("examples"):
        parts += [f"## Examples: clean and {report['examples'][0]['attack']} (in report.html)", "",
                  examples_md(report), ""]
    parts += indicators_md(report)
    rows = [[c["name"], c["status"], c["message"]] for c in report["masking"]["checks"]]
    parts += ["## Gradient-masking checks", "", md_table(["check", "status", "detail"], rows),
              "", report["masking"]["verdict"], "",
              f"robustlab {report['robustlab_version']}, {report['created']}", ""]
    return "\n".join(parts)


# ---- HTML --------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:60em;
color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .7em;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
.warn{background:#fde2c8}.pass{background:#dff3df}.skip{color:#888}.best{font-weight:bold;background:#e6f0ff}
td.text{text-align:left}.verdict{padding:.8em;border-left:4px solid #888;background:#f7f7f7}
svg text{font-size:12px;font-family:sans-serif}
.strip{display:flex;flex-wrap:wrap;gap:1em}.strip figure{margin:0;font-size:.85em}
.strip img{width:64px;height:64px;image-rendering:pixelated;border:1px solid #ccc;margin-right:2px}
"""


def html_table(head: Sequence[str], rows: Sequence[Sequence[str]],
               classes: Sequence[Sequence[str]] | None = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            cls = classes[i][j] if classes else ""
            attr = f' class="{cls}"' if cls else ""
            cells.append(f"<td{attr}>{html.escape(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"


def svg_bars(labels: Sequence[str], values: Sequence[float], title: str) -> str:
    """Horizontal bars of accuracies in [0, 1]."""
    width, bar, left = 640, 18, 170
    height = 30 + bar * len(labels) + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}"><title>{html.escape(title)}</title>',
             f'<text x="{left}" y="16">{html.escape(title)}</text>']
    scale = width - left - 60
    for i, (label, value) in enumerate(zip(labels, values)):
        y = 26 + i * bar
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{html.escape(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 2}" width="{max(1.0, scale * value):.1f}" '
                     f'height="{bar - 4}" fill="#4a78c2"/>')
        parts.append(f'<text x="{left + scale * value + 4:.1f}" y="{y + 13}">{100 * value:.1f}%</text>')
    parts.append("</svg>")
    return "".join(parts)


COLORS = ("#c2452d", "#2d6cc2", "#3a9a4a", "#8a4fc2", "#c2902d", "#555555")


def svg_line(points: Sequence[tuple[float, float]], title: str, xlabel: str, log_x: bool = False) -> str:
    """A line plot of accuracy (y in [0, 1]) against x."""
    return svg_lines({"": points}, title, xlabel, log_x)


def svg_lines(series: dict[str, Sequence[tuple[float, float]]], title: str, xlabel: str,
              log_x: bool = False) -> str:
    """Line plots of accuracy (y in [0, 1]) against x, one colour per named series (a legend
    when there are several)."""
    width, height, left, bottom, top, right = 480, 280, 50, 40, 28, 20
    legend = 16 * (len(series) + 1) if len(series) > 1 else 0
    height += legend
    allx = sorted({x for points in series.values() for x, _ in points})

    def scaled(x: float) -> float:
        return math.log10(x) if log_x else x

    lo, hi = scaled(allx[0]), scaled(allx[-1])
    span = hi - lo or 1.0
    base = height - bottom - legend

    def px(x: float) -> float:
        return left + (scaled(x) - lo) / span * (width - left - right)

    def py(y: float) -> float:
        return base - y * (base - top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}"><title>{html.escape(title)}</title>',
             f'<text x="{left}" y="16">{html.escape(title)}</text>',
             f'<line x1="{left}" y1="{py(0)}" x2="{width - right}" y2="{py(0)}" stroke="#333"/>',
             f'<line x1="{left}" y1="{py(0)}" x2="{left}" y2="{py(1)}" stroke="#333"/>']
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<text x="{left - 6}" y="{py(tick) + 4:.1f}" text-anchor="end">'
                     f'{int(100 * tick)}%</text>')
        parts.append(f'<line x1="{left}" y1="{py(tick):.1f}" x2="{width - right}" y2="{py(tick):.1f}" '
                     'stroke="#eee"/>')
    for x in allx:
        parts.append(f'<text x="{px(x):.1f}" y="{base + 16}" text-anchor="middle">{x:g}</text>')
    for i, (name, points) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{'M' if j == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for j, (x, y) in enumerate(points))
        parts.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>' for x, y in points]
        if len(series) > 1:
            y_legend = base + 50 + 16 * i
            parts.append(f'<rect x="{left}" y="{y_legend - 9}" width="10" height="10" fill="{color}"/>'
                         f'<text x="{left + 16}" y="{y_legend}">{html.escape(name)}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{base + 30}" text-anchor="middle">'
                 f'{html.escape(xlabel)}</text></svg>')
    return "".join(parts)


def _class(report: dict, index: int) -> str:
    names = report.get("class_names") or []
    return names[index] if index < len(names) else str(index)


def examples_html(report: dict) -> str:
    """The examples' section: a heading and `examples_strip`."""
    attack = html.escape(report["examples"][0]["attack"])
    return f"<h2>Examples: clean and {attack}</h2>{examples_strip(report)}"


def examples_strip(report: dict) -> str:
    """The strip of examples: each test image clean and attacked, with the model's predictions
    (an attacked prediction that is wrong is marked)."""
    cells = []
    for e in report["examples"]:
        label, clean, adv = (html.escape(_class(report, e[k])) for k in ("label", "clean_pred", "adv_pred"))
        broken = " class=\"warn\"" if e["adv_pred"] != e["label"] else ""
        clean_png, adv_png = html.escape(e["clean_png"]), html.escape(e["adv_png"])
        cells.append(
            f"<figure><img alt=\"test image {e['index']}\" src=\"data:image/png;base64,{clean_png}\">"
            f"<img alt=\"attacked\" src=\"data:image/png;base64,{adv_png}\"><figcaption>"
            f"true {label}<br>clean: {clean}<br><span{broken}>attacked: {adv}</span></figcaption></figure>")
    attack = html.escape(report["examples"][0]["attack"])
    return (f"<p>The first {len(cells)} test images (left) and their {attack} examples at eps "
            f"{report['eps']:.4g} (right).</p><div class=\"strip\">{''.join(cells)}</div>")


def examples_md(report: dict) -> str:
    head = ["image", "true class", "clean prediction", f"{report['examples'][0]['attack']} prediction"]
    rows = [[str(e["index"]), _class(report, e["label"]), _class(report, e["clean_pred"]),
             _class(report, e["adv_pred"]) + ("" if e["adv_pred"] == e["label"] else " (wrong)")]
            for e in report["examples"]]
    return md_table(head, rows)


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def to_html(report: dict) -> str:
    attacks = report["attacks"]
    body = [f"<h1>Robustness report: {html.escape(report_title(report))}</h1>",
            f"<p>{html.escape(_header(report))}</p>",
            html_table(ATTACK_HEAD, attack_rows(report), _attack_classes(report)),
            f"<p>{html.escape(_worst_line(report)).replace('**', '')}</p>",
            svg_bars(["clean", *[a["label"] for a in attacks]],
                     [report["clean_accuracy"], *[a["accuracy"] for a in attacks]], "accuracy per attack")]
    for name in report["curves"]:
        points = [(float(k), v) for k, v in curve_points(report, name)]
        body.append(f"<h2>Accuracy vs {'PGD steps' if name == 'steps' else 'eps'}</h2>")
        body.append(svg_line(points, f"accuracy vs {name}", "PGD steps" if name == "steps" else "eps",
                             log_x=name == "steps"))
    if report.get("examples"):
        body.append(examples_html(report))
    if report.get("indicators"):
        body += ["<h2>Indicators of attack failure (Pintor et al. 2022)</h2>",
                 html_table(INDICATOR_HEAD, indicator_rows(report)),
                 f"<p>{html.escape(indicator_probe_line(report))}</p>",
                 "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in report["indicators"]["verdict"])
                 + "</ul>", *[f"<p><code>{html.escape(line)}</code></p>" for line in indicator_next(report)]]
    checks = report["masking"]["checks"]
    body += ["<h2>Gradient-masking checks</h2>",
             html_table(["check", "status", "detail"],
                        [[c["name"], c["status"], c["message"]] for c in checks],
                        [["", c["status"], "text"] for c in checks]),
             f"<p class=\"verdict\">{html.escape(report['masking']['verdict'])}</p>",
             f"<p><small>robustlab {html.escape(report['robustlab_version'])}, "
             f"{html.escape(report['created'])}</small></p>"]
    return page(f"robustlab report: {report_title(report)}", "\n".join(body))


def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())
