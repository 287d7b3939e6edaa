"""The style-control part of ``prefcli eval report``: for the Arena-Hard runs among the report's runs, grouped by
protocol, judge and baseline (style control compares models against one shared baseline), the raw and the
style-controlled scores of every row with bootstrap intervals (see :mod:`prefcli.eval.style_control`).

Battles come from each run's ``judgments.jsonl``: every successful judgment (and every identical-output tie) is
``weight`` games (3 for a strong verdict) with outcome ``model_score``, and carries the style features of both
answers. Runs written before the features were recorded are left out, with a note."""

from __future__ import annotations

import json
from pathlib import Path

from prefcli.data.readers import iter_rows
from prefcli.eval.style_control import Battle, style_controlled_scores


def _battles(judgments_file: Path, name: str) -> list[Battle] | None:
    battles = []
    for _, row in iter_rows(judgments_file):
        if row.get("status") not in ("ok", "identical") or row.get("model_score") is None:
            continue
        if not isinstance(row.get("model_style"), dict) or not isinstance(row.get("reference_style"), dict):
            return None
        battles.extend([Battle(name, float(row["model_score"]), row["model_style"], row["reference_style"])]
                       * int(row.get("weight") or 1))
    return battles


def style_control_groups(observations, *, rounds: int = 100, seed: int = 0) -> tuple[list[dict], list[str]]:
    """``(groups, notes)``: one group per (protocol, judge, baseline) of the Arena-Hard observations."""
    grouped: dict[tuple, dict[str, list[Battle]]] = {}
    notes: list[str] = []
    seen: set[str] = set()
    for obs in observations:
        protocol = obs.column.details.get("protocol", "")
        if obs.column.kind != "winrate" or not protocol.startswith("arena") or obs.source in seen:
            continue
        seen.add(obs.source)
        results_file = Path(obs.source)
        judgments_file = results_file.with_name("judgments.jsonl")
        if not judgments_file.is_file():
            notes.append(f"{results_file}: no judgments.jsonl beside it (left out of style control)")
            continue
        battles = _battles(judgments_file, obs.name)
        if battles is None:
            notes.append(f"{judgments_file}: written before style features were recorded (left out of style "
                         "control; rerun the same command to add them, judgments are reused)")
            continue
        results = json.loads(results_file.read_text(encoding="utf-8"))
        key = (protocol, obs.column.details.get("judge_model") or obs.column.details.get("judge"),
               results.get("reference"), obs.column.details.get("template_version"))
        grouped.setdefault(key, {}).setdefault(obs.name, []).extend(battles)
    groups = []
    for (protocol, judge, baseline, template), by_model in grouped.items():
        battles = [battle for name in sorted(by_model) for battle in by_model[name]]
        scores = style_controlled_scores(battles, rounds=rounds, seed=seed)
        groups.append({"protocol": protocol, "judge": judge, "baseline": baseline, "template_version": template,
                       **scores})
    return groups, notes


def render_style_markdown(groups: list[dict], notes: list[str]) -> str:
    """The report's "Style control" section (empty when there is no Arena-Hard run)."""
    if not groups and not notes:
        return ""
    lines = ["## Style control (Arena-Hard)", ""]
    for group in groups:
        percent = round(100 * group["level"])
        lines += [f"Baseline `{group['baseline']}`, judge `{group['judge']}`, protocol {group['protocol']}; "
                  f"{group['battles']} battles; controlled for {', '.join(group['features']) or 'nothing'} "
                  f"(length in {group['length_unit']}); median and {percent}% interval of {group['rounds']} "
                  "bootstrap refits, as arena-hard-auto reports them.", "",
                  f"| Method | raw score (%) | {percent}% CI | style-controlled (%) | {percent}% CI | battles |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, scores in sorted(group["models"].items(), key=lambda kv: -kv[1]["style_controlled"]):
            lines.append(f"| {name} | {scores['raw']:.1f} | [{scores['raw_interval'][0]:.1f}, "
                         f"{scores['raw_interval'][1]:.1f}] | {scores['style_controlled']:.1f} | "
                         f"[{scores['interval'][0]:.1f}, {scores['interval'][1]:.1f}] | {scores['battles']} |")
        if group["style_coefficients"]:
            lines += ["", "Style coefficients (median): " + ", ".join(
                f"{name} {value:+.3f}" for name, value in group["style_coefficients"].items())]
        lines.append("")
    for note in notes:
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"
