"""The one exception type for user mistakes.

A `UserError` carries a message that says what was wrong and how to fix it; the CLI prints it as
one line and exits 2 (``--debug`` shows the traceback). Bugs stay ordinary exceptions.
"""


class UserError(Exception):
    """A mistake in the user's input (file, config, argument), not a bug in robustlab."""
