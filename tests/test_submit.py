"""bench submit: only untouched result files from a clean commit are published, all or none."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from benchmark.cli import cli
from benchmark.config import fingerprint
from benchmark.results import integrity


@pytest.fixture()
def sealed(make_result):
    def seal(**changes) -> dict:
        result = make_result(**changes)
        result["fingerprint"] = fingerprint(result["config"])
        result["environment"].update(git_commit="0123abc", git_dirty=False)
        result["integrity"] = integrity(result)
        return result

    return seal


def save(tmp_path, name: str, result: dict):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(result))
    return path


def invoke(*args):
    return CliRunner().invoke(cli, ["submit", *map(str, args)])


def test_an_untouched_result_is_published_under_a_stable_name(sealed, tmp_path):
    result = sealed(seed=2)
    outcome = invoke(save(tmp_path, "run", result), "--into", tmp_path / "published")
    assert outcome.exit_code == 0, outcome.output
    target = (
        tmp_path / "published" / "synth-cub" / "ms" / f"{result['fingerprint'][:12]}-seed2.json"
    )
    assert json.loads(target.read_text()) == result
    again = invoke(save(tmp_path, "copy", result), "--into", tmp_path / "published")
    assert again.exit_code == 2 and "is already published as" in again.stderr


def test_edited_figures_are_rejected(sealed, tmp_path):
    result = sealed()
    result["final"]["metrics"]["recall@1"] = 0.99
    outcome = invoke(save(tmp_path, "edited", result), "--into", tmp_path / "published")
    assert outcome.exit_code == 2
    assert "no longer matches its integrity hash" in outcome.stderr
    assert not (tmp_path / "published").exists()


def test_an_edited_config_is_rejected_even_when_resealed(sealed, tmp_path):
    result = sealed()
    result["config"]["hparams"]["beta"] = 99.0
    result["integrity"] = integrity(result)
    outcome = invoke(save(tmp_path, "config", result), "--into", tmp_path / "published")
    assert outcome.exit_code == 2
    assert "fingerprint is not the one its config gives" in outcome.stderr


@pytest.mark.parametrize(
    "commit,dirty,message",
    [(None, None, "does not name a clean commit"), ("0123abc", True, "git_dirty True")],
)
def test_runs_without_a_clean_commit_are_rejected(sealed, tmp_path, commit, dirty, message):
    result = sealed()
    result["environment"].update(git_commit=commit, git_dirty=dirty)
    result["integrity"] = integrity(result)
    outcome = invoke(save(tmp_path, "dirty", result), "--into", tmp_path / "published")
    assert outcome.exit_code == 2 and message in outcome.stderr


def test_one_bad_file_publishes_nothing(sealed, tmp_path):
    good = save(tmp_path, "good", sealed(seed=0))
    bad = sealed(seed=1)
    del bad["integrity"]
    outcome = invoke(good, save(tmp_path, "bad", bad), "--into", tmp_path / "published")
    assert outcome.exit_code == 2 and "no integrity hash" in outcome.stderr
    assert not (tmp_path / "published").exists()


@pytest.mark.parametrize(
    "field,value",
    [("method", "../../../x"), ("dataset", "ABSOLUTE"), ("dataset", "..")],
)
def test_names_that_would_leave_into_are_refused(sealed, tmp_path, field, value):
    value = str(tmp_path / "absolute") if value == "ABSOLUTE" else value
    result = sealed()
    result["config"][field] = value
    result["fingerprint"] = fingerprint(result["config"])
    result["integrity"] = integrity(result)
    path = save(tmp_path, "escape", result)
    outcome = invoke(path, "--into", tmp_path / "a" / "b" / "published")
    assert outcome.exit_code == 2
    assert f"{path}: invalid value at 'config.{field}': '{value}' does not match" in outcome.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["escape.json"]


def test_a_symlinked_folder_under_into_is_not_written_through(sealed, tmp_path):
    into, elsewhere = tmp_path / "published", tmp_path / "elsewhere"
    into.mkdir()
    elsewhere.mkdir()
    (into / "synth-cub").symlink_to(elsewhere, target_is_directory=True)
    outcome = invoke(save(tmp_path, "run", sealed()), "--into", into)
    assert outcome.exit_code == 2
    assert f"{into / 'synth-cub'} is a symbolic link" in outcome.stderr
    assert list(elsewhere.iterdir()) == []


def test_two_given_files_of_one_configuration_and_seed_are_named(sealed, tmp_path):
    result = sealed(seed=3)
    first, second = save(tmp_path, "first", result), save(tmp_path, "second", result)
    outcome = invoke(first, second, "--into", tmp_path / "published")
    assert outcome.exit_code == 2
    assert outcome.stderr == (
        f"Error: {second} and {first} are the same configuration ({result['fingerprint'][:12]}) "
        f"and seed (3): submit one of them.\n"
    )
    assert not (tmp_path / "published").exists()
