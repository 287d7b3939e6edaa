"""Rendering a built report: the Markdown table, the PNG chart, and writing ``report.{md,json,png}``."""

from __future__ import annotations

from pathlib import Path

from prefcli.data.atomic import atomic_open, write_json
from prefcli.errors import ConfigError


def format_cell(cell: dict | None, digits: int = 2) -> str:
    if cell is None:
        return "–"
    if cell["std"] is None:
        return f"{cell['mean']:.{digits}f}"
    return f"{cell['mean']:.{digits}f} ({cell['std']:.{digits}f})"


def header(column: dict) -> str:
    return column["label"] if column.get("unit") == "raw" or column["kind"] == "reward" else f"{column['label']} (%)"


def render_markdown(report: dict) -> str:
    columns = report["columns"]
    lines = ["# prefcli evaluation report", "",
             "| Method | runs | " + " | ".join(header(c) for c in columns) + " |",
             "|---|---:|" + "---:|" * len(columns)]
    for row in report["rows"]:
        cells = [format_cell(row["cells"].get(c["key"])) for c in columns]
        lines.append(f"| {row['name']} | {len(row['runs'])} | " + " | ".join(cells) + " |")
    lines += ["", ("Cells are mean (std) over a row's runs, in percent; std is the sample standard deviation "
                   "(n - 1); a single run shows its value alone. Winrates are adjusted: (W + T/2) / (W + L + T). "
                   "Harness proportions are lm-eval's values x 100."), ""]
    if report["demo_judges"]:
        judges = ", ".join(f"`{judge}`" for judge in report["demo_judges"])
        lines += [(f"**Demo judge:** {judges} is prefcli's deterministic built-in demo judge, not a language model: "
                   "its winrates only show the pipeline working and say nothing about model quality."), ""]
    if report.get("skipped"):
        lines += ["Result files without a number (left out): " + "; ".join(f"`{item}`" for item in report["skipped"]),
                  ""]
    lines += ["## Runs", "", "| Method | run | seeds |", "|---|---|---|"]
    for row in report["rows"]:
        for run in row["runs"]:
            seeds = sorted({seed for cell in row["cells"].values() for seed, r in zip(cell["seeds"], cell["runs"])
                            if r == run and seed is not None})
            lines.append(f"| {row['name']} | `{run}` | {', '.join(map(str, seeds)) or '–'} |")
    style = report.get("style_control")
    if style:
        from prefcli.eval.report_style import render_style_markdown

        lines += ["", render_style_markdown(style["groups"], style["notes"]).rstrip("\n")]
    return "\n".join(lines) + "\n"


def render_chart(report: dict, path: Path) -> None:
    """Grouped bars (one group per column, one bar per row) with the 95% intervals, written as PNG."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("the report chart needs matplotlib (pip install 'prefcli[eval]')") from None

    columns, rows = report["columns"], report["rows"]
    width = 0.8 / max(1, len(rows))
    figure = Figure(figsize=(max(6.0, 1.6 * len(columns) + 2) + 2.2, 4.8), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    # matplotlib's default cycle repeats after 10 colours; a testbed report has more rows than that.
    palette = matplotlib.colormaps["tab20"] if len(rows) > 10 else matplotlib.colormaps["tab10"]
    for index, row in enumerate(rows):
        xs, heights, lower, upper = [], [], [], []
        for position, column in enumerate(columns):
            cell = row["cells"].get(column["key"])
            if cell is None:
                continue
            xs.append(position + (index - (len(rows) - 1) / 2) * width)
            heights.append(cell["mean"])
            low, high = cell["ci95"] if cell["ci95"] else (cell["mean"], cell["mean"])
            lower.append(max(0.0, cell["mean"] - low))
            upper.append(max(0.0, high - cell["mean"]))
        axes.bar(xs, heights, width=width, yerr=[lower, upper], capsize=3, color=palette(index % palette.N),
                 label=f"{row['name']} (n={len(row['runs'])})")
    axes.set_xticks(range(len(columns)))
    axes.set_xticklabels([column["label"] for column in columns], rotation=25, ha="right", fontsize=8)
    axes.set_ylabel("percent, or raw where labeled (bar: mean; whisker: 95% interval)", fontsize=8)
    axes.set_ylim(bottom=0)
    title = "prefcli evaluation report"
    if report["demo_judges"]:
        title += " - winrates from a DEMO judge"
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png")


def write_report(report: dict, output_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and ``report.png`` atomically into ``output_dir``."""
    output_dir = Path(output_dir)
    paths = {"markdown": output_dir / "report.md", "json": output_dir / "report.json",
             "chart": output_dir / "report.png"}
    with atomic_open(paths["markdown"]) as handle:
        handle.write(render_markdown(report))
    write_json(paths["json"], report)
    render_chart(report, paths["chart"])
    return paths
