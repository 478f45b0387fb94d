"""The one exception type the command line turns into a clear message and exit status 2, and
the "did you mean" every message about an unknown name ends with."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """Bad input or a broken component: the message says what, where and what to do."""


class StopRun(BenchError):
    """Raised by a lifecycle hook to stop the run on purpose (a time budget, early stopping, a
    test that interrupts a run): unlike any other exception of a hook, it is not caught; the run
    ends without a result file (its last resume checkpoint stays, for `bench run --resume`) and
    the command line prints the message."""


def suggest(name: str, choices: Iterable[str], preferred: Iterable[str] = ()) -> str:
    """'Did you mean ...? Available: ...' for an unknown name; `preferred` matches come first."""
    choices = sorted(choices)
    close = list(preferred) or difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} Available: {', '.join(choices) or '(none)'}."
