"""The one exception type the CLI turns into a one-line message and exit code 2."""


class SelfCorrectError(Exception):
    """Bad input: a config field, a file, a value. The message names it."""
