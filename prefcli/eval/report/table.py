"""The report as a JSON-ready dict: ordered, labeled columns and one row per name with a statistics cell per
column."""

from __future__ import annotations

from prefcli import __version__
from prefcli.eval.report.columns import Column, Observation, protocol_rank
from prefcli.eval.report.stats import aggregate_cell


def build_report(observations: list[Observation], name_by: str = "dir", skipped: list[str] | None = None) -> dict:
    """Columns: judged metrics first (AlpacaEval, Arena-Hard, others; within a protocol in
    :data:`~prefcli.eval.report.columns.JUDGED_METRICS` order), then harness metrics, each in order of first
    appearance. Rows: one per name, in order of first appearance."""
    rows: dict[str, dict] = {}
    columns: dict[str, Column] = {}
    for obs in observations:
        columns.setdefault(obs.column.key, obs.column)
        row = rows.setdefault(obs.name, {"name": obs.name, "runs": [], "cells": {}})
        if obs.run not in row["runs"]:
            row["runs"].append(obs.run)
    ordered = sorted(columns.values(), key=_column_order)
    labels = column_labels(ordered)
    for row in rows.values():
        for column in ordered:
            members = [obs for obs in observations if obs.name == row["name"] and obs.column.key == column.key]
            if members:
                row["cells"][column.key] = aggregate_cell(members)
    demo = sorted({column.details.get("judge_model") or column.details.get("judge")
                   for column in ordered if column.demo_judge})
    return {
        "name_by": name_by,
        "columns": [{"key": c.key, "label": labels[c.key], "kind": c.kind, "demo_judge": c.demo_judge, **c.details}
                    for c in ordered],
        "rows": list(rows.values()),
        "demo_judges": demo,
        "skipped": list(skipped or []),
        "prefcli_version": __version__,
    }


def _column_order(column: Column) -> tuple:
    if column.kind == "winrate":
        return (0, protocol_rank(column), column.order)
    return (1, 0, 0)  # stable sort: harness columns keep their order of appearance


def column_labels(columns: list[Column]) -> dict[str, str]:
    """Judged labels name their judge when a protocol was judged by more than one judge, and always say so when the
    judge was the demo judge."""
    judges_per_label: dict[str, set] = {}
    for column in columns:
        judges_per_label.setdefault(column.label, set()).add(column.key)
    labels = {}
    for column in columns:
        label = column.label
        judge = column.details.get("judge_model") or column.details.get("judge")
        if column.kind == "winrate" and column.demo_judge:
            label += f" (demo judge {judge})"
        elif column.kind == "winrate" and len(judges_per_label[column.label]) > 1:
            label += f" [{judge}]"
        labels[column.key] = label
    return labels
