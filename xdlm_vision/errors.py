"""The two exceptions that reach the user as a clean one-line message (see docs/architecture.md).

* :class:`UserError` — a problem with the user's input (bad flag, missing file, wrong shape).
  Raised only at the edges: config loading and validation, files and data paths, commands.
  The CLI prints ``error: <message>`` and exits with status 2, no traceback.
* :class:`TrainingDiverged` — the loss of a training run became NaN/inf. Not the user's typo and
  not a library bug: the CLI prints ``error: <message>`` (naming the last good checkpoint) and
  exits with status :data:`EXIT_DIVERGED`.

Contract violations inside the library (the pure tensor core, wrong shapes passed by code)
raise ``ValueError`` / ``TypeError`` and show a traceback: they are bugs to fix, not input to change.
"""

EXIT_USER_ERROR = 2  # UserError
EXIT_DIVERGED = 3  # TrainingDiverged


class UserError(Exception):
    """A problem with the user's input (bad flag, missing file, wrong shape).

    The CLI prints ``error: <message>`` on one line and exits with status 2, no traceback.
    The message should name the flag, config key or file to change.
    """


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; raised on every process so that all of them stop.

    The message names the step and the last good checkpoint (to ``--resume`` from after lowering
    the learning rate); the CLI exits with status :data:`EXIT_DIVERGED`.
    """
