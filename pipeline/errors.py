"""The base of every failure that is the user's to fix (bad params, missing data, a broken download...).

Command-line entry points print such errors as one line, without a traceback, and exit with status 1.
"""


class UserError(Exception):
    """A failure with a message that says what is wrong and what to do about it."""
