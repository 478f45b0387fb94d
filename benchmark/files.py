"""Writing files so that no half-written file is ever left under the final name, paths from
names others wrote that stay in their folder, and reading our torch files safely."""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from benchmark.errors import BenchError

FULL_DISK = {errno.ENOSPC, errno.EDQUOT}


def write_atomically(
    path: Path, write: Callable[[BinaryIO], None], elsewhere: str = "another folder"
) -> None:
    """Call `write(handle)` on a temporary file beside `path`, then rename it to `path`; on any
    error the temporary file goes. A full disk is said plainly, with `elsewhere` (the option
    that writes somewhere else) as what to do."""
    try:
        _write_and_rename(path, write)
    except BaseException as error:
        code = _full_disk(error)
        if code is None:
            raise
        raise BenchError(
            f"{os.strerror(code)} while writing {path}: free space or pass {elsewhere}."
        ) from None


def _write_and_rename(path: Path, write: Callable[[BinaryIO], None]) -> None:
    temp, handle = _temporary_beside(path)
    try:
        with handle:
            write(handle)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _temporary_beside(path: Path) -> tuple[Path, BinaryIO]:
    """A new file of a random name, created as mkstemp does (O_EXCL) but with mode 0o666, so
    that the kernel applies the umask as for any open(): mkstemp's 0600 made results and pages
    unreadable by others, and reading the umask means changing it for every thread."""
    while True:
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        return temp, os.fdopen(descriptor, "wb")


def _full_disk(error: BaseException | None) -> int | None:
    """ENOSPC or EDQUOT when `error`, or an error it was raised from or while handling, is one:
    torch.save reports a failed write as a RuntimeError raised while handling the OSError."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in FULL_DISK:
            return error.errno
        error = error.__cause__ or error.__context__
    return None


def path_inside(folder: Path, relative: Path) -> Path:
    """`folder / relative` for names read from a file someone sent (a result's dataset and
    method): a BenchError when it is absolute, climbs out with '..', or passes through a
    symbolic link below `folder`, which could lead anywhere. `folder` itself, chosen by the
    user, may be a link."""
    if relative.is_absolute() or ".." in relative.parts:
        raise BenchError(f"{relative} would lead outside {folder}.")
    path = folder
    for part in relative.parts:
        path = path / part
        if path.is_symlink():
            raise link_error(path, folder)
    return path


def link_error(path: Path, folder: Path) -> BenchError:
    return BenchError(
        f"{path} is a symbolic link; dmlbench neither reads nor writes through links under "
        f"{folder} (one could lead outside it). Replace it with the folder or file itself."
    )


def process_is_running(pid: int) -> bool:
    """Whether a process with this id exists: a live writer's temp file is not stale."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def read_tensors(path: Path, what: str) -> Any:
    """torch.load of a file of ours, weights_only, on the CPU; `what` starts the error."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BenchError(f"{what} {path} not found.") from None
    except Exception as error:
        raise BenchError(f"{what}: cannot read {path}: {error}") from None
