"""Files dmlbench writes: under the user's umask (not mkstemp's 0600), never half-written, and a
full disk said plainly."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmark.engine.checkpoint import save_checkpoint
from benchmark.errors import BenchError
from benchmark.files import write_atomically
from benchmark.leaderboard import write_files
from benchmark.results import write_result


@pytest.fixture()
def umask():
    """Set the process umask for one test, and restore it."""
    previous = os.umask(0o022)
    try:
        yield lambda mask: os.umask(mask)
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(umask, tmp_path, mask, expected):
    umask(mask)
    write_atomically(tmp_path / "file.txt", lambda handle: handle.write(b"text"))
    assert mode(tmp_path / "file.txt") == expected
    assert (tmp_path / "file.txt").read_bytes() == b"text"


def test_results_tables_and_checkpoints_are_readable_by_others_under_umask_022(
    umask, make_result, tmp_path
):
    write_result(make_result(), tmp_path / "result.json")
    write_files({"synth-cub.md": "table\n", "index.html": "<p>page</p>\n"}, tmp_path / "boards")
    save_checkpoint(tmp_path / "run.pt", nn.Linear(2, 2), nn.Identity(), {}, "f" * 64)
    written = [tmp_path / "result.json", tmp_path / "run.pt", *(tmp_path / "boards").iterdir()]
    assert {path.name: mode(path) for path in written} == {
        "result.json": 0o644, "run.pt": 0o644, "synth-cub.md": 0o644, "index.html": 0o644,
    }  # fmt: skip


def no_space(handle) -> None:
    handle.write(b"half")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_is_said_plainly_and_leaves_nothing(tmp_path):
    path = tmp_path / "result.json"
    with pytest.raises(BenchError) as error:
        write_atomically(path, no_space)
    assert str(error.value) == (
        f"No space left on device while writing {path}: free space or pass another folder."
    )
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_under_a_torch_error_is_recognised(tmp_path):
    def torch_like(handle) -> None:  # torch.save reports the OSError as its context
        try:
            no_space(handle)
        except OSError:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from None

    with pytest.raises(BenchError, match="No space left on device while writing"):
        write_atomically(tmp_path / "run.pt", torch_like)
    assert list(tmp_path.iterdir()) == []


def test_other_errors_of_the_writer_pass_unchanged_and_leave_nothing(tmp_path):
    def broken(handle) -> None:
        raise ValueError("not a number")

    with pytest.raises(ValueError, match="not a number"):
        write_atomically(tmp_path / "result.json", broken)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_saving_a_checkpoint_names_the_results_dir(tmp_path, monkeypatch):
    def full(payload, handle) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    path = tmp_path / "run.pt"
    with pytest.raises(BenchError) as error:
        save_checkpoint(path, nn.Linear(2, 2), nn.Identity(), {}, "f" * 64)
    assert str(error.value) == (
        f"No space left on device while writing {path}: free space or pass another --results-dir."
    )
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_writing_a_result_names_the_results_dir(
    make_result, tmp_path, monkeypatch
):
    import benchmark.results

    def full(path, write, elsewhere="another folder"):
        write_atomically(path, no_space, elsewhere)

    monkeypatch.setattr(benchmark.results, "write_atomically", full)
    with pytest.raises(BenchError, match="free space or pass another --results-dir.$"):
        write_result(make_result(), tmp_path / "result.json")
    assert list(tmp_path.iterdir()) == []
