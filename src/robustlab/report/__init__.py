"""Reports: one evaluation as report.json / report.md / report.html, and runs side by side."""

from robustlab.report.compare import compare_html, compare_markdown
from robustlab.report.render import markdown, schema, to_html, write_report
from robustlab.report.sections import Section, write_sections_page

__all__ = ["Section", "compare_html", "compare_markdown", "markdown", "schema", "to_html",
           "write_sections_page", "write_report"]
