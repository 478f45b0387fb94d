from __future__ import annotations

import pytest

from benchmark.errors import BenchError
from benchmark.textfile import read_text


def message(path, fix=None) -> str:
    with pytest.raises(BenchError) as error:
        read_text(path, fix)
    return str(error.value)


def test_utf8_text_is_returned_whole(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes("1 café\n2 b\n".encode())
    assert read_text(path) == "1 café\n2 b\n"


def test_a_bad_byte_is_named_by_line_and_column(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"1 a\n2 b\n3 caf\xe9\n")
    assert message(path) == f"{path}:3: not UTF-8 text (byte 0xe9 in column 6); save it as UTF-8."
    assert message(path, "Re-extract it.") == (
        f"{path}:3: not UTF-8 text (byte 0xe9 in column 6). Re-extract it."
    )


def test_missing_folder_and_unreadable_files_say_what_to_do(tmp_path, unreadable):
    assert message(tmp_path / "absent.txt") == f"{tmp_path / 'absent.txt'}: file not found."
    assert message(tmp_path / "absent.txt", "Re-extract it.") == (
        f"{tmp_path / 'absent.txt'}: file not found. Re-extract it."
    )
    assert message(tmp_path) == f"{tmp_path}: is a folder, not a file; give the file's path."
    path = tmp_path / "locked.txt"
    path.write_text("1 a\n")
    unreadable(path)
    assert message(path, "Re-extract it.") == (
        f"{path}: cannot be read (Permission denied); check its permissions."
    )
