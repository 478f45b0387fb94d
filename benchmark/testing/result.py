"""What one conformance check reports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckResult:
    """One check of one method: its name, whether it passed, and why (or what it measured)."""

    name: str
    passed: bool
    reason: str


class CheckFailed(Exception):
    """A check's condition did not hold; the message is the reason shown to the user."""
