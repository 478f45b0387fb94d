"""The committed tables under leaderboards/ are exactly what their result files give, so they
cannot drift from their evidence (what `bench leaderboard check` checks)."""

from __future__ import annotations

from pathlib import Path

from benchmark.leaderboard import build, collect, render_files, stale_files

LEADERBOARDS = Path(__file__).resolve().parents[1] / "leaderboards"


def test_committed_leaderboards_match_their_result_files(registry):
    documents = build(registry, collect([LEADERBOARDS / "results"]), LEADERBOARDS)
    files = render_files(documents, html=True)
    assert stale_files(files, LEADERBOARDS) == [], "run `bench leaderboard build --html` and commit"
    assert {"synth-cub.md", "synth-coco.md", "cub.md", "coco.md", "index.html"} <= set(files)
