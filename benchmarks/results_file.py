"""Shared by the benchmark scripts: replace one "## " section of results.md in place, and time a call."""

from __future__ import annotations

import os
import re
import statistics
import textwrap
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results.md")


def wrap_prose(line: str) -> str:
    """Prose at results.md's width; tables and headings stay one line each."""
    return line if line.startswith(("|", "#")) else textwrap.fill(line, 100, break_on_hyphens=False)


def write_section(text: str) -> None:
    """Replace the section whose "## " heading starts `text` (or append it), atomically."""
    heading = text.splitlines()[0]
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    match = re.search(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", old, flags=re.M | re.S)
    if match:  # keep the other sections as they are
        rest = old[match.end():]
        new = old[:match.start()] + text + ("\n" + rest if rest else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text(new)
    os.replace(tmp, RESULTS)


def command_line(parser, args) -> str:
    """The command that made a section: the script and every option not left at its default."""
    options = "".join(f" --{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                      if k != "no_write" and v != parser.get_default(k))
    return f"python benchmarks/{parser.prog}{options}"


def publish(text: str, no_write: bool) -> None:
    """Print the section, and write it into results.md unless told not to."""
    print(text)
    if not no_write:
        write_section(text)


def median_seconds(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls of fn, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
