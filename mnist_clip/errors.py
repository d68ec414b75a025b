"""The one exception type for bad input, shown to the user as a single line."""


class InputError(ValueError):
    """Invalid user input: a config value, a data file, a run folder.

    The message is one line that says what is wrong and what is allowed; the
    CLI prints it on stderr and exits with status 2.
    """
