"""Reports: one evaluation as report.json / report.md / report.html, and runs side by side."""

from robustlab.report.compare import compare_html, compare_markdown
from robustlab.report.render import markdown, schema, to_html, write_report
from robustlab.report.robustbench import robustbench_entry, write_robustbench
from robustlab.report.sections import Section, write_sections_page

__all__ = ["Section", "compare_html", "compare_markdown", "markdown", "robustbench_entry", "schema",
           "to_html", "write_robustbench", "write_sections_page", "write_report"]
