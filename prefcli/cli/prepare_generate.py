"""``prefcli prepare generate``: sample completions from a model, rank them with a judge, write candidate records
(the MC-PO paper's instruct setup; the online loop runs the same step between training segments)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from prefcli.cli.common import console, err_console, progress_bar, summary_table
from prefcli.errors import ConfigError

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
    def generate(
        model: Annotated[str, typer.Option("--model",
                                           help="Policy to sample from: HF directory, LoRA adapter or hub id.")],
        prompts: Annotated[Path, typer.Option("--prompts",
                                              help="JSONL records with a prompt field (other fields ignored).")],
        output: Annotated[Path, typer.Option("--output", "-o",
                                             help="JSONL candidate records (atomic) + .meta.json.")],
        temperatures: str = typer.Option("0.6,0.8,1.0", "--temperatures", help="Comma-separated temperatures."),
        per_temperature: int = typer.Option(2, "--per-temperature", help="Completions sampled at each temperature."),
        max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Longest completion, in tokens."),
        top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling p."),
        batch_size: int = typer.Option(8, "--batch-size", help="Prompts per generation batch."),
        backend: str = typer.Option("hf", "--backend", help="Generation backend: hf or vllm."),
        judge: str = typer.Option(..., "--judge", help="OpenAI-compatible base URL, hf:PATH, or rule:length (demo)."),
        judge_model: str | None = typer.Option(None, "--judge-model", help="Model name the judge server expects."),
        judge_key_env: str | None = typer.Option(None, "--judge-key-env",
                                                    help="Environment variable holding the judge's API key."),
        protocol: str = typer.Option("alpaca", "--protocol", help="Judge protocol: alpaca, arena or a YAML path."),
        judge_prompt: Annotated[Path | None, typer.Option("--judge-prompt",
                                                          help="Your own judge prompt file.")] = None,
        both_orders: bool = typer.Option(False, "--both-orders/--one-order",
                                         help="Judge each comparison in both orders (2(n-1) calls); a disagreement "
                                              "keeps the incumbent."),
        store: Annotated[Path | None, typer.Option(
            "--store", help="Judgment store (default: OUTPUT.judgments.sqlite).")] = None,
        concurrency: int = typer.Option(8, "--concurrency", help="Judge calls in flight."),
        max_retries: int = typer.Option(3, "--max-retries", help="Retries of a failed judge call."),
        retry_delay: float = typer.Option(1.0, "--retry-delay", help="Base of the exponential backoff (s)."),
        timeout: float = typer.Option(120.0, "--timeout", help="Judge request timeout (s)."),
        judge_max_tokens: int | None = typer.Option(None, "--judge-max-tokens",
                                                       help="Judge reply length (default: the protocol's)."),
        seed: int = typer.Option(0, "--seed", help="Seed of sampling, order coins and the rejected draw."),
        limit: int | None = typer.Option(None, "--limit", min=1, help="Use the first N distinct prompts."),
    ) -> None:
        from prefcli.data.sidecar import file_checksum
        from prefcli.online.candidates import (
            CandidateSettings,
            generate_candidates,
            parse_temperatures,
            write_candidates,
        )
        from prefcli.online.prompts import read_prompts
        from prefcli.online.ranking import JudgeSettings

        settings = CandidateSettings(temperatures=parse_temperatures(temperatures), per_temperature=per_temperature,
                                     max_new_tokens=max_new_tokens, top_p=top_p, batch_size=batch_size,
                                     backend=backend, seed=seed)
        judge_settings = JudgeSettings(judge=judge, judge_model=judge_model, protocol=protocol,
                                       judge_prompt=str(judge_prompt) if judge_prompt else None,
                                       both_orders=both_orders, concurrency=concurrency, max_retries=max_retries,
                                       retry_delay=retry_delay, timeout=timeout, max_tokens=judge_max_tokens)
        settings.validate()
        judge_settings.check()
        api_key = judge_api_key(judge_key_env)
        if output.is_dir():
            raise ConfigError(f"--output {output} is a directory; name a .jsonl file")
        if output.resolve() == prompts.resolve():
            raise ConfigError(f"--output {output} is the prompts file; write to another path")
        items, duplicates = read_prompts(prompts, limit=limit)
        store_path = store or output.with_name(output.name + ".judgments.sqlite")
        cache = output.with_name(output.name + ".completions.json")

        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        with progress_bar() as bar:
            result = generate_candidates(model, items, settings, judge_settings, store_path=store_path,
                                         api_key=api_key, completions_cache=cache,
                                         progress=generation_progress(bar))
        if duplicates:
            result.skipped["repeated prompt"] = duplicates
        config = {**settings.to_dict(), **{k: v for k, v in judge_settings.to_dict().items()},
                  "model": model, "store": str(store_path), "completions": str(cache), "limit": limit}
        write_candidates(output, result, config=config, inputs={"prompts": file_checksum(prompts)},
                         argv=["prefcli", *sys.argv[1:]])
        if result.extra.get("demo_judge"):
            err_console.print(f"[yellow]--judge {judge} is a demo judge: it prefers the longer output; not a "
                              "quality measure[/yellow]")
        rows = [
            ("prompts", result.prompts),
            ("records written", len(result.records)),
            ("skipped", ", ".join(f"{why}: {n}" for why, n in result.skipped.items()) or "0"),
            ("completions per prompt", settings.completions_per_prompt),
            ("judge calls (n - 1 per prompt" + (", both orders)" if both_orders else ")"), result.judgments),
            ("reused from store", result.judgments_reused),
            ("sampling time (s)", result.generation_seconds if not result.completions_reused else "reused"),
            ("judging time (s)", result.judge_seconds),
            ("output", str(output)),
        ]
        console.print(summary_table("prefcli prepare generate", rows))
