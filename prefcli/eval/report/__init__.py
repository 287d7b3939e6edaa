"""``prefcli eval report``: many evaluation runs (seeds, models, methods) in one mean (std) table, like Table 1 of
the MC-PO paper (arXiv 2502.04567): rows are methods, columns are the AlpacaEval and Arena-Hard winrates and each
lm-eval headline metric. Written as Markdown, JSON and a PNG bar chart with 95% intervals.

The package is split by job:

- :mod:`~prefcli.eval.report.columns`: what a column is and which numbers of a result file become columns
  (:data:`~prefcli.eval.report.columns.JUDGED_METRICS`: add an entry there to report another number of a judged
  ``results.json``, e.g. a length-controlled winrate);
- :mod:`~prefcli.eval.report.collect`: finding result files in run directories, naming runs, reading
  observations;
- :mod:`~prefcli.eval.report.stats`: mean, sample std and the 95% interval of a cell (``scipy.stats``);
- :mod:`~prefcli.eval.report.table`: the report as a JSON-ready dict (ordered columns, one row per name);
- :mod:`~prefcli.eval.report.render`: Markdown, PNG chart and writing the files.

Inputs. Each DIR is one run. Its results are the ``results.json`` (judged winrate) and ``harness.json`` (lm-eval)
files in DIR itself and in its immediate subdirectories (so ``runs/mcpo-seed0/{alpaca,arena,harness}/`` is one run).

Grouping (``name_by``):
  ``dir``   (default) the run directory's name with a trailing seed marker removed (``mcpo-seed1``, ``mcpo_seed1``,
            ``mcpo.seed1`` -> ``mcpo``); a directory named only ``seed1`` takes its parent's name
            (``runs/mcpo/seed1`` -> ``mcpo``);
  ``model`` the ``model`` field recorded in the result files, with the same seed marker removed;
  ``path``  the directory path as given: no merging, one row per directory.
Runs with the same name form one row.

Numbers. Winrates are percent; lm-eval proportions (accuracy, exact match, ...) are multiplied by 100 (other
lm-eval metrics, e.g. perplexity, are shown as they are and labeled "raw"); intervals of percentages are clipped to
[0, 100].
A cell is the mean over the row's runs with the sample standard deviation (n - 1) in parentheses; one run shows
its value alone. The 95% interval drawn in the chart is, for one run, the judge result's bootstrap ``ci95`` or
value +- 1.96 stderr for a harness metric; for several runs, the t-interval of the mean over runs,
mean +- t(0.975, n - 1) * std / sqrt(n). Winrate columns are kept apart per protocol and judge; a judge named
``rule:...`` is prefcli's deterministic demo judge and is labeled as such everywhere.
"""

from prefcli.eval.report.collect import NAME_BY, collect, run_name, strip_seed
from prefcli.eval.report.columns import JUDGED_METRICS, Column, JudgedMetric, Observation
from prefcli.eval.report.render import format_cell, render_chart, render_markdown, write_report
from prefcli.eval.report.stats import aggregate_cell, t_quantile_975
from prefcli.eval.report.table import build_report

__all__ = ["JUDGED_METRICS", "NAME_BY", "Column", "JudgedMetric", "Observation", "aggregate_cell", "build_report",
           "collect", "format_cell", "render_chart", "render_markdown", "run_name", "strip_seed", "t_quantile_975",
           "write_report"]
