"""The one exception type that reaches the user as a clean one-line message."""


class UserError(Exception):
    """A problem with the user's input (bad flag, missing file, wrong shape).

    The CLI prints ``error: <message>`` on one line and exits with status 2, no traceback.
    Library code raises it wherever the fix is on the caller's side; the message should name
    the flag or argument to change.
    """
