"""The leaderboards as one static, self-contained page (`bench leaderboard build --html`): every
dataset's ranked tables, sortable by any column, with Recall@K curves (retrieval) or mAP against
code length (hashing) per method; papers' figures in their own tables and dashed curves.

No server, no external asset: styles, script and charts are inline, so the file can be opened
from disk or attached to a release. The page is derived from the same documents as the Markdown
tables, deterministically, so `bench leaderboard check` also guards it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from benchmark.charts import PALETTE, Series, escape, line_chart
from benchmark.leaderboard import BELOW, SELECTION_TITLES, format_figure

BITS = re.compile(r"(\d+)[ -]bits?\b")
BITS_OVERRIDE = re.compile(r"^model\.hash\.bits=\d+$")


def render_html(documents: Mapping[str, dict[str, Any]]) -> str:
    """The whole page for {dataset: leaderboard document}."""
    names = sorted(documents)
    nav = " · ".join(f'<a href="#{_id(n)}">{escape(n)}</a>' for n in names)
    body = "\n".join(_dataset_section(documents[name]) for name in names)
    return _PAGE.format(style=_STYLE, nav=nav, body=body, script=_SCRIPT)


def _dataset_section(document: Mapping[str, Any]) -> str:
    name = document["dataset"]
    hashing = _is_hashing(document)
    parts = [f'<section id="{_id(name)}"><h2>{escape(name)}</h2>']
    for index, table in enumerate(document["tables"], 1):
        title = (f"{table['protocol']} v{table['version']} ({table['kind']} protocol), "
                 f"{SELECTION_TITLES[table['selection']]}")  # fmt: skip
        if not table.get("standard", True):
            title += " — OFF-PROTOCOL for this dataset, not ranked with its standard tables"
        parts.append(f"<h3>{escape(title)}</h3>")
        chart = (
            _bits_chart(table["rows"], title) if hashing else _recall_chart(table["rows"], title)
        )
        parts.append(chart)
        parts.append(_board_table(f"{_id(name)}-{index}", table, document))
    if not document["tables"]:
        parts.append("<p>No reproduced result yet: the commands below the papers' figures fill "
                     "this section.</p>")  # fmt: skip
    if document["paper"]:
        parts += _paper_section(document)
    parts.append("</section>")
    return "\n".join(parts)


def _is_hashing(document: Mapping[str, Any]) -> bool:
    return document["main_metric"] == "map@k"


# --- charts ----------------------------------------------------------------------------------


def _recall_chart(rows: Sequence[dict], title: str) -> str:
    """Recall@K against K for the best rows (as many as the palette has colours)."""
    series = []
    for row in rows[: len(PALETTE)]:
        points = _recall_points(row["metrics"], lambda summary: summary["mean"])
        if points:
            series.append(Series(_row_label(row, rows), points))
    return _chart_or_note(series, "K", "Recall@K (%)", f"Recall@K, {title}")


def _recall_points(metrics: Mapping[str, Any], value) -> tuple[tuple[float, float], ...]:
    found = []
    for name, summary in metrics.items():
        if name.startswith("recall@") and name[7:].isdigit():
            found.append((float(name[7:]), 100 * value(summary)))
    return tuple(sorted(found))


def _bits_chart(rows: Sequence[dict], title: str) -> str:
    """mAP@k against code length, one line per method and setting (bits aside)."""
    lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        bits = _size_number(row["size"])
        lines[_without_bits(row)].append((float(bits), 100 * row["metrics"]["map@k"]["mean"]))
    series = [Series(label, tuple(points)) for label, points in list(lines.items())[: len(PALETTE)]]
    return _chart_or_note(series, "bits", "mAP@k (%)", f"mAP against bits, {title}")


def _without_bits(row: Mapping[str, Any]) -> str:
    settings = [s for s in row["settings"].split(", ") if not BITS_OVERRIDE.match(s)]
    settings = [s for s in settings if s != "defaults"]
    return row["method"] + (f" ({', '.join(settings)})" if settings else "")


def _row_label(row: Mapping[str, Any], rows: Sequence[dict]) -> str:
    """The method's name, with its settings and size where another row shares the name."""
    if sum(other["method"] == row["method"] for other in rows) == 1:
        return row["method"]
    return f"{row['method']} ({row['settings']}, {row['size']})"


def _chart_or_note(series: Sequence[Series], x_label: str, y_label: str, title: str) -> str:
    if not series:
        return ""
    return f"<figure>{line_chart(series, x_label, y_label, title)}</figure>"


def _paper_chart(document: Mapping[str, Any]) -> str:
    rows = document["paper"]
    if _is_hashing(document):
        lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for row in rows:
            bits = BITS.search(row["setting"])
            if bits and "map@k" in row["metrics"]:
                label = f"{row['method']} (paper)"
                lines[label].append((float(bits.group(1)), 100 * row["metrics"]["map@k"]))
        series = [Series(label, tuple(p), dashed=True) for label, p in lines.items()]
        return _chart_or_note(series, "bits", "mAP@k (%)", "papers' mAP against bits")
    series = []
    for row in rows[: len(PALETTE)]:
        points = _recall_points(row["metrics"], lambda value: value)
        if points:
            label = f"{row['method']}, {row['setting']} (paper)"
            series.append(Series(label, points, dashed=True))
    return _chart_or_note(series, "K", "Recall@K (%)", "papers' Recall@K")


# --- tables ----------------------------------------------------------------------------------


def _board_table(table_id: str, table: Mapping[str, Any], document: Mapping[str, Any]) -> str:
    names, rows = document["metrics"], table["rows"]
    headers = ["#", "method", "settings", "plugin", "backbone", "size", *names, "seeds",
               "hours", "results"]  # fmt: skip
    body = []
    for rank, row in enumerate(rows, 1):
        method = row["method"] + (BELOW if row.get("below_untrained") else "")
        cells = [_cell(rank, rank), _cell(method), _cell(row["settings"]),
                 _cell(row["plugin"]), _cell(row["backbone"]),
                 _cell(row["size"], _size_number(row["size"]))]  # fmt: skip
        for name in names:
            summary = row["metrics"].get(name)
            cells.append(_cell(format_figure(summary), summary["mean"] if summary else None))
        hours = sum(row["hours"].values())
        cells += [_cell(len(row["seeds"]), len(row["seeds"])),
                  _cell(", ".join(f"{h:.2f} {d}" for d, h in row["hours"].items()), hours),
                  _links(row["results"])]  # fmt: skip
        body.append(f"<tr>{''.join(cells)}</tr>")
    body += [_untrained_row(row, names) for row in table.get("untrained", [])]
    return _table(table_id, headers, body, "board")


def _untrained_row(row: Mapping[str, Any], names: Sequence[str]) -> str:
    """The table's "no training" reference row of one backbone and size."""
    cells = [_cell("-"), _cell("no training"), _cell("untrained network"), _cell("-"),
             _cell(row["backbone"]), _cell(row["size"], _size_number(row["size"]))]  # fmt: skip
    for name in names:
        summary = row["metrics"].get(name)
        cells.append(_cell(format_figure(summary), summary["mean"] if summary else None))
    cells += [_cell(row["runs"], row["runs"]), _cell("-"), _cell("-")]
    return f'<tr class="untrained">{"".join(cells)}</tr>'


def _paper_section(document: Mapping[str, Any]) -> list[str]:
    names = document["metrics"]
    headers = ["method", "setting", *names, "reproduced − paper", "source"]
    body = []
    for row in document["paper"]:
        cells = [_cell(row["method"]), _cell(row["setting"])]
        for name in names:
            value = row["metrics"].get(name)
            cells.append(_cell("-" if value is None else f"{100 * value:.1f}", value))
        difference = ", ".join(f"{name} {100 * value:+.2f} ({row['compared_with']})"
                               for name, value in row["difference"].items())  # fmt: skip
        cells += [_cell(difference or "-"), _cell(row["source"])]
        body.append(f"<tr>{''.join(cells)}</tr>")
    commands = sorted({row["command"] for row in document["paper"]})
    return [
        "<h3>Paper-reported figures (not reproduced here, not ranked)</h3>",
        _paper_chart(document),
        _table(f"{_id(document['dataset'])}-paper", headers, body, "paper"),
        "<p>To fill the reproduced figures:</p>",
        "<pre>" + "\n".join(escape(c) for c in commands) + "</pre>",
    ]


def _table(table_id: str, headers: Sequence[str], body: Sequence[str], kind: str) -> str:
    head = "".join(f'<th scope="col" title="sort by {escape(h)}">{escape(h)}</th>' for h in headers)
    return (f'<table id="{table_id}" class="sortable {kind}"><thead><tr>{head}</tr></thead>'
            f"<tbody>\n{chr(10).join(body)}\n</tbody></table>")  # fmt: skip


def _cell(text: Any, sort: float | None = None) -> str:
    key = "" if sort is None else f' data-sort="{sort:.10g}"'
    return f"<td{key}>{escape(str(text))}</td>"


def _links(paths: Sequence[str]) -> str:
    anchors = " ".join(f'<a href="{escape(p)}">{i}</a>' for i, p in enumerate(paths, 1))
    return f"<td>{anchors}</td>"


def _size_number(size: str) -> int:
    """64 of "64-d" or of "64 bits"."""
    return int(re.match(r"\d+", size).group())


def _id(name: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", name.lower())


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dmlbench leaderboards</title>
<style>{style}</style>
</head>
<body>
<header>
<h1>dmlbench leaderboards</h1>
<p>Generated by <code>bench leaderboard build --html</code> from the result files it links; do not
edit. Figures in percent, mean ± 95% confidence interval over seeds (Student t). Click a column
header to sort; a link ending in <code>#sort=TABLE:COLUMN:desc</code> opens a table sorted.</p>
<nav>{nav}</nav>
</header>
<main>
{body}
</main>
<script>{script}</script>
</body>
</html>
"""

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1280px; padding: 0 16px;
       color: #1b1b1b; }
h2 { border-bottom: 2px solid #1f77b4; padding-bottom: 4px; margin-top: 40px; }
table { border-collapse: collapse; margin: 8px 0 24px; }
th { background: #dce6f2; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
th, td { border: 1px solid #c8c8c8; padding: 3px 8px; text-align: left; }
td[data-sort] { text-align: right; font-variant-numeric: tabular-nums; }
table.board td, td[data-sort] { white-space: nowrap; }
table.paper td { background: #fbf7ea; }
figure { margin: 8px 0; }
pre { background: #f4f4f4; padding: 8px; overflow-x: auto; }
"""

_SCRIPT = """
function sortTable(table, column, descending) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const key = (row) => {
    const cell = row.cells[column];
    return cell.dataset.sort !== undefined ? parseFloat(cell.dataset.sort) : cell.textContent;
  };
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    const order = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
    return descending ? -order : order;
  });
  rows.forEach((row) => body.appendChild(row));
  Array.from(table.tHead.rows[0].cells).forEach((th, index) => {
    if (index === column) th.setAttribute("aria-sort", descending ? "descending" : "ascending");
    else th.removeAttribute("aria-sort");
  });
}
document.querySelectorAll("table.sortable").forEach((table) => {
  Array.from(table.tHead.rows[0].cells).forEach((th, column) => {
    th.addEventListener("click", () => {
      const descending = th.getAttribute("aria-sort") !== "descending";
      sortTable(table, column, descending);
    });
  });
});
const wanted = /^#sort=([\\w-]+):(\\d+):(asc|desc)$/.exec(window.location.hash);
if (wanted) {
  const table = document.getElementById(wanted[1]);
  if (table) sortTable(table, parseInt(wanted[2], 10), wanted[3] === "desc");
}
"""
