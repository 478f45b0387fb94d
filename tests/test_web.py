"""The leaderboard web page: self-contained, deterministic, sortable, with charts; rendered in
headless Chromium (Debian's `chromium`, installed by .ci/run) and checked on a screenshot."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmark.charts import BOTTOM, HEIGHT, LEFT, PALETTE, TOP, Series, line_chart
from benchmark.cli import cli
from benchmark.leaderboard import build, collect
from benchmark.web import render_html

from .test_leaderboard import write

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture()
def page(registry, make_result, tmp_path) -> str:
    folder = tmp_path / "results"
    for seed, recall in enumerate((0.60, 0.62, 0.64)):
        write(folder, f"ms-{seed}", make_result(seed=seed, recall=recall))
    write(folder, "sgml", make_result(method="sgml", recall=0.7, fingerprint="b"))
    write(folder, "binomial", make_result(method="binomial", recall=0.5, fingerprint="c"))
    return render_html(build(registry, collect([folder]), tmp_path))


def rows_of(page: str, table_id: str) -> list[str]:
    """The method column of a table, in page order."""
    body = re.search(rf'<table id="{table_id}".*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    return re.findall(r"<tr><td[^>]*>[^<]*</td><td>([^<]*)</td>", body)


def test_the_page_has_no_external_asset(page):
    assert "<link" not in page and " src=" not in page
    external = set(re.findall(r"https?://[^\"' <]+", page)) - {"http://www.w3.org/2000/svg"}
    assert external == set()
    assert page.count("<script>") == 1 and page.count("<style>") == 1


def test_tables_are_ranked_sortable_and_carry_numeric_sort_keys(page):
    assert rows_of(page, "synth-cub-1") == ["sgml", "ms", "binomial"]
    table = re.search(r'<table id="synth-cub-1".*?</table>', page, re.S).group()
    assert 'class="sortable board"' in table
    # recall@1 of ms is the mean of its three seeds; its cell sorts on the mean itself.
    assert '<td data-sort="0.62">62.00 ± 4.97</td>' in table


def test_one_recall_curve_per_ranked_row_and_dashed_papers_curves(page):
    cub = re.search(r'<section id="synth-cub">.*?</section>', page, re.S).group()
    curves = re.findall(r'<polyline class="series" points="([^"]+)"', cub)
    assert len(curves) == 3
    assert all(len(points.split()) == 4 for points in curves)  # K = 1, 2, 4, 8
    paper = re.search(r'<section id="cub">.*?</section>', page, re.S).group()
    assert 'stroke-dasharray="6 4"><title>ms, BN-Inception, 512-d (paper)' in paper


def test_chart_places_points_on_a_log2_axis_and_whole_tens():
    svg = line_chart([Series("a", ((1, 55.0), (2, 65.0), (4, 75.0)))], "K", "R", "t")
    points = re.search(r'points="([^"]+)"', svg).group(1).split()
    xs = [float(p.split(",")[0]) for p in points]
    ys = [float(p.split(",")[1]) for p in points]
    assert xs[0] == LEFT and xs[1] - xs[0] == pytest.approx(xs[2] - xs[1])  # 1, 2, 4: log2
    # The axis spans 50 to 80: 55 sits a sixth of the way up from the bottom.
    assert ys[0] == pytest.approx(HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) / 6, abs=0.1)
    assert [t for t in re.findall(r">(\d+)</text>", svg)][:4] == ["50", "60", "70", "80"]


def test_hashing_charts_put_map_against_bits_one_line_per_method():
    from benchmark.web import _bits_chart

    def row(method, bits, value, settings="defaults"):
        return {"method": method, "size": f"{bits} bits", "settings": settings,
                "metrics": {"map@k": {"mean": value}}}  # fmt: skip

    rows = [row("ics", 32, 0.70), row("csq", 32, 0.65), row("ics", 16, 0.6, "model.hash.bits=16")]
    svg = _bits_chart(rows, "t")
    lines = re.findall(r'points="([^"]+)"[^>]*><title>([^<]+)</title>', svg)
    assert [(label, len(points.split())) for points, label in lines] == [("ics", 2), ("csq", 1)]


def test_check_guards_the_page_once_it_is_committed(registry, make_result, tmp_path):
    folder = tmp_path / "results"
    write(folder, "ms", make_result())
    out = tmp_path / "boards"
    runner = CliRunner()
    args = ["--results", str(folder), "--out", str(out)]
    assert runner.invoke(cli, ["leaderboard", "build", "--html", *args]).exit_code == 0
    assert runner.invoke(cli, ["leaderboard", "check", *args]).exit_code == 0
    page = out / "index.html"
    page.write_text(page.read_text().replace("62.00", "99.00").replace("50.00", "99.00"))
    checked = runner.invoke(cli, ["leaderboard", "check", *args])
    assert checked.exit_code == 1
    assert "index.html" in checked.output and "build --html" in checked.output
    # A plain build keeps an existing page in step with the tables.
    assert runner.invoke(cli, ["leaderboard", "build", *args]).exit_code == 0
    assert runner.invoke(cli, ["leaderboard", "check", *args]).exit_code == 0


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--hide-scrollbars"]  # fmt: skip
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run does)")
def test_the_page_renders_and_sorts_in_headless_chromium(tmp_path, page):
    html = tmp_path / "index.html"
    html.write_text(page)
    # Sorted by the method column, ascending, through the page's own script.
    dom = chromium("--dump-dom", f"{html.as_uri()}#sort=synth-cub-1:1:asc", profile=tmp_path / "a")
    assert rows_of(dom.stdout, "synth-cub-1") == ["binomial", "ms", "sgml"], dom.stderr[-2000:]
    assert 'aria-sort="ascending"' in dom.stdout
    shot = tmp_path / "shot.png"
    chromium("--window-size=1280,4000", f"--screenshot={shot}", html.as_uri(),
             profile=tmp_path / "b")  # fmt: skip
    counts = colour_counts(shot)
    header = counts.get((0xDC, 0xE6, 0xF2), 0)  # table header cells
    assert header > 2000, f"table headers not painted ({header} pixels)"
    for colour in PALETTE[:3]:  # the three synth-cub curves, and the papers' dashed ones
        rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        assert counts.get(rgb, 0) > 200, f"no chart line of colour {colour} in the screenshot"


def colour_counts(path: Path) -> dict[tuple[int, int, int], int]:
    from PIL import Image

    with Image.open(path) as image:
        assert image.size == (1280, 4000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    return {rgb: count for count, rgb in colours}
