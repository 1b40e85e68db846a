"""The one exception type for user mistakes.

A `UserError` carries a message that says what was wrong and how to fix it; the CLI prints it as
one line and exits 2 (``--debug`` shows the traceback). Bugs stay ordinary exceptions.
"""


class UserError(Exception):
    """A mistake in the user's input (file, config, argument), not a bug in robustlab."""


def check_ranges(checks: list[tuple[bool, str, object, str]]) -> None:
    """Raise a `UserError` for the first failed (ok, key, value, expected) check, worded
    `key=value is out of range: expected ...`."""
    for ok, key, value, expected in checks:
        if not ok:
            raise UserError(f"{key}={value!r} is out of range: expected {expected}")
