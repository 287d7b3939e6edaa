"""``prefcli prepare generate``: sample completions from a model, rank them with a judge, write candidate records
(the MC-PO paper's instruct setup; the online loop runs the same step between training segments)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from prefcli.cli.common import console, err_console, progress_bar, summary_table
from prefcli.errors import ConfigError
from prefcli.settings import build
from prefcli.settings.cli import given, options, with_options
from prefcli.settings.online import GenerateCandidatesSettings

EXAMPLE = ("prefcli prepare generate --model ./sft --prompts prompts.jsonl --output data/generated.jsonl "
           "--temperatures 0.6,0.8,1.0 --per-temperature 2 --judge http://127.0.0.1:8000/v1 "
           "--judge-model llama-70b --max-new-tokens 512")


def judge_api_key(judge_key_env: str | None) -> str | None:
    """The judge's API key from the environment variable ``--judge-key-env`` names (never from a flag)."""
    if not judge_key_env:
        return None
    key = os.environ.get(judge_key_env)
    if not key:
        raise ConfigError(f"--judge-key-env: the environment variable {judge_key_env} is not set")
    return key


def generation_progress(bar):
    """A ``progress(phase, done, total)`` callback drawing one bar per phase."""
    return bar.callback({"generate": "sampling", "judge": "ranking (judge calls)"})


def register(prepare_app: typer.Typer) -> None:
    @prepare_app.command("generate", help="Sample completions per prompt at several temperatures, find the preferred "
                                          "one by iterative pairwise ranking with a judge (n - 1 calls), and write "
                                          f"candidate records.\n\nExample: {EXAMPLE}")
    @with_options(options(GenerateCandidatesSettings, rename=GenerateCandidatesSettings.FLAGS))
    def generate(**flags) -> None:
        from prefcli.data.sidecar import file_checksum
        from prefcli.online.candidates import generate_candidates, write_candidates
        from prefcli.online.prompts import read_prompts

        settings = build(GenerateCandidatesSettings, given(GenerateCandidatesSettings, flags), "command line")
        settings.check()
        sampling, judging = settings.sampling, settings.judging
        api_key = judge_api_key(judging.judge_key_env)
        output, prompts = Path(settings.output), Path(settings.prompts)
        if output.is_dir():
            raise ConfigError(f"--output {output} is a directory; name a .jsonl file")
        if output.resolve() == prompts.resolve():
            raise ConfigError(f"--output {output} is the prompts file; write to another path")
        items, duplicates = read_prompts(prompts, limit=settings.limit)
        store_path = Path(settings.store) if settings.store else output.with_name(output.name + ".judgments.sqlite")
        cache = output.with_name(output.name + ".completions.json")

        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        with progress_bar() as bar:
            result = generate_candidates(settings.model, items, sampling, judging, seed=settings.seed,
                                         store_path=store_path, api_key=api_key, completions_cache=cache,
                                         progress=generation_progress(bar))
        if duplicates:
            result.skipped["repeated prompt"] = duplicates
        config = {**sampling.to_dict(), **judging.to_dict(), "seed": settings.seed, "model": settings.model,
                  "store": str(store_path), "completions": str(cache), "limit": settings.limit}
        write_candidates(output, result, config=config, inputs={"prompts": file_checksum(prompts)},
                         argv=["prefcli", *sys.argv[1:]])
        if result.extra.get("demo_judge"):
            err_console.print(f"[yellow]--judge {judging.judge} is a demo judge: it prefers the longer output; not "
                              "a quality measure[/yellow]")
        rows = [
            ("prompts", result.prompts),
            ("records written", len(result.records)),
            ("skipped", ", ".join(f"{why}: {n}" for why, n in result.skipped.items()) or "0"),
            ("completions per prompt", sampling.completions_per_prompt),
            ("judge calls (n - 1 per prompt" + (", both orders)" if judging.both_orders else ")"), result.judgments),
            ("reused from store", result.judgments_reused),
            ("sampling time (s)", result.generation_seconds if not result.completions_reused else "reused"),
            ("judging time (s)", result.judge_seconds),
            ("output", str(output)),
        ]
        console.print(summary_table("prefcli prepare generate", rows))
