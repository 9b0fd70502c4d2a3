"""Errors that mean "the user must change something", reported as one line with exit status 2."""


class UserError(Exception):
    """A mistake in the options or inputs (missing file, bad URL, unknown value, unreachable database)."""
