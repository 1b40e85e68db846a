"""A page of sections (text, a table, a PNG figure) as <stem>.json / .md / .html: the explain,
detect and results pages. The HTML embeds each PNG (base64), so it stays one self-contained
file; the PNGs are also written beside it."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from robustlab.io import atomic_write_text
from robustlab.report.render import html_table, md_table, page


@dataclass
class Section:
    title: str
    text: str = ""
    head: Sequence[str] = ()
    rows: Sequence[Sequence[str]] = ()
    figure: str | None = None  # file name of the PNG
    png: bytes | None = field(default=None, repr=False)


def write_sections_page(title: str, sections: Sequence[Section], numbers: dict, out_dir: Path,
                        stem: str = "explain") -> dict:
    """Write the PNGs and <stem>.json / .md / .html; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    md = [f"# {title}", ""]
    body = [f"<h1>{html.escape(title)}</h1>"]
    for s in sections:
        md += [f"## {s.title}", "", s.text, ""]
        body += [f"<h2>{html.escape(s.title)}</h2>", f"<p>{html.escape(s.text)}</p>"]
        if s.rows:
            md += [md_table(s.head, s.rows), ""]
            body.append(html_table(s.head, s.rows))
        if s.png is not None and s.figure:
            path = out_dir / s.figure
            path.write_bytes(s.png)
            files[s.figure] = path
            md += [f"![{s.title}]({s.figure})", ""]
            data = base64.b64encode(s.png).decode()
            body.append(f'<img alt="{html.escape(s.title)}" src="data:image/png;base64,{data}" '
                        'style="max-width:100%">')
    files["json"] = atomic_write_text(out_dir / f"{stem}.json", json.dumps(numbers, indent=1) + "\n")
    files["md"] = atomic_write_text(out_dir / f"{stem}.md", "\n".join(md))
    files["html"] = atomic_write_text(out_dir / f"{stem}.html", page(title, "\n".join(body)))
    return files
