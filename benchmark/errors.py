"""The one exception type the command line turns into a clear message and exit status 2."""


class BenchError(Exception):
    """Bad input or a broken component: the message says what, where and what to do."""
