"""The one exception type the command line turns into a clear message and exit status 2."""


class BenchError(Exception):
    """Bad input or a broken component: the message says what, where and what to do."""


class StopRun(BenchError):
    """Raised by a lifecycle hook to stop the run on purpose (a time budget, early stopping, a
    test that interrupts a run): unlike any other exception of a hook, it is not caught; the run
    ends without a result file (its last resume checkpoint stays, for `bench run --resume`) and
    the command line prints the message."""
