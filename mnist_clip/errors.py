"""The one exception type for bad input, shown to the user as a single line."""


class InputError(ValueError):
    """Invalid user input: a config value, a data file, a run folder.

    The message is one line that says what is wrong and what is allowed; the
    CLI prints it on stderr and exits with status 2.
    """


class Interrupted(Exception):
    """A stop was asked for (SIGINT/SIGTERM) before any result existed; nothing was written."""

    def __init__(self, exit_code: int):
        super().__init__(f"interrupted before training started; nothing was written (exit status {exit_code})")
        self.exit_code = exit_code
