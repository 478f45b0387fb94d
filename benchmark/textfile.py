"""Reading a text file that someone else wrote (a protocol, a dataset's annotation list): UTF-8,
with errors that name the file, the line of a bad byte and what to do."""

from __future__ import annotations

from pathlib import Path

from benchmark.errors import BenchError


def read_text(path: Path, fix: str | None = None) -> str:
    """The UTF-8 text of file `path`, or a BenchError saying why not.

    fix: what to do about a missing file, a folder or bad bytes (e.g. "Re-extract the archive.");
    without it the message gives generic advice. An unreadable file always asks to check its
    permissions.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BenchError(f"{path}: file not found.{_then(fix)}") from None
    except IsADirectoryError:
        folder_fix = _or(fix, "give the file's path")
        raise BenchError(f"{path}: is a folder, not a file{folder_fix}") from None
    except OSError as error:
        reason = error.strerror or str(error)
        raise BenchError(f"{path}: cannot be read ({reason}); check its permissions.") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _not_utf8(path, data, error.start, fix) from None


def _not_utf8(path: Path, data: bytes, offset: int, fix: str | None) -> BenchError:
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1  # rfind gives -1 on line 1
    return BenchError(
        f"{path}:{line}: not UTF-8 text (byte 0x{data[offset]:02x} in column {column})"
        f"{_or(fix, 'save it as UTF-8')}"
    )


def _then(fix: str | None) -> str:
    return f" {fix}" if fix else ""


def _or(fix: str | None, advice: str) -> str:
    """`fix` as a sentence of its own, else the generic advice after a semicolon."""
    return f". {fix}" if fix else f"; {advice}."
