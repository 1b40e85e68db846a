"""Reports: one evaluation as report.json / report.md / report.html, and runs side by side."""

from robustlab.report.compare import compare_html, compare_markdown, load_report
from robustlab.report.explain import Section, write_explain_report
from robustlab.report.render import markdown, schema, to_html, write_report

__all__ = ["Section", "compare_html", "compare_markdown", "load_report", "markdown", "schema", "to_html",
           "write_explain_report", "write_report"]
