"""Errors that are the user's to fix: the CLI prints them in one line and exits 2."""


class UserError(Exception):
    """Bad input from the user: a missing file, a wrong shape, an invalid value.

    The message names the problem (the file, the field, the shape expected), so
    the command line can print it without a traceback.
    """
