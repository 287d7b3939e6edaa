"""Judged evaluation as a library call: AlpacaEval- or Arena-Hard-style winrates of a model against a reference.

    settings = JudgedEvalSettings(output=Path("runs/alpaca"), judge="rule:length", outputs=Path("out.json"),
                                  reference="ref.json", protocol="alpaca")
    evaluation = run_judged_eval(settings)       # opens the judge, judges, writes the run, closes the judge
    evaluation.summary["winrate"]

The steps are public for callers that own the judge: :func:`check_settings` (before any work),
:func:`collect_inputs` (read or generate the outputs, match them with the reference), then, in the caller's event
loop, ``await evaluate_judged(settings, inputs, judge=judge)``; the caller closes the judge. A run directory holds
``results.json`` (+ ``.meta.json``), ``judgments.jsonl``, ``judgments.sqlite`` (the durable store: a rerun pays for
no judgment twice and retries only the failed ones) and, with ``model``, ``outputs.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prefcli import __version__
from prefcli.data.atomic import atomic_open, write_json
from prefcli.data.sidecar import file_checksum, write_sidecar
from prefcli.errors import ConfigError
from prefcli.eval import items as items_lib
from prefcli.eval.items import EvalItem
from prefcli.eval.judges import DEMO_LABEL, judge_kind, make_judge
from prefcli.eval.length_control import average_lengths, length_controlled_winrate, read_difficulty_table
from prefcli.eval.model_outputs import generate_model_outputs, generation_record
from prefcli.eval.paths import check_output_dir
from prefcli.eval.protocols import Protocol, load_protocol
from prefcli.eval.run import JudgmentResult, judge_all_async, judgment_rows, plan_judgments, summarize
from prefcli.eval.store import JudgmentStore, acquire_store_lock
from prefcli.eval.usage import usage_summary
from prefcli.generate import GenerationParams
from prefcli.hub import looks_like_hub_id

PROTOCOL_VERSIONS = {"v0.1": "arena", "v2.0": "arena-v2"}


@dataclass(frozen=True)
class JudgedEvalSettings:
    """Everything a judged evaluation depends on (the ``eval alpaca|arena`` flags)."""

    output: Path
    judge: str | tuple[str, ...]  # http(s) base URL, hf:PATH or rule:NAME; several URLs of one judge model
    protocol: str = "alpaca"  # protocol name or YAML path
    protocol_version: str | None = None  # arena: v0.1 (protocol "arena") or v2.0 ("arena-v2")
    model: Path | None = None  # generate the outputs with this model ...
    outputs: Path | None = None  # ... or read them from this file
    instructions: str | None = None
    reference: str | None = None
    judge_model: str | None = None
    judge_key_env: str | None = None  # the name of the variable; the key itself is never stored
    judge_prompt: Path | None = None
    concurrency: int = 8
    timeout: float = 120.0
    max_retries: int = 3
    retry_delay: float = 1.0
    max_failed_frac: float = 0.05
    judge_max_tokens: int | None = None
    seed: int = 0
    store: Path | None = None
    limit: int | None = None
    bootstrap_rounds: int = 1000
    generation: GenerationParams = field(default_factory=GenerationParams)
    strict: bool = False  # refuse instructions without a model output or a reference output
    price_in: float | None = None  # USD per million prompt tokens
    price_out: float | None = None  # USD per million completion tokens
    lc_difficulty: Path | None = None  # per-instruction difficulty CSV for the length-controlled GLM

    @property
    def store_path(self) -> Path:
        return self.store or self.output / "judgments.sqlite"

    @property
    def judge_specs(self) -> tuple[str, ...]:
        return (self.judge,) if isinstance(self.judge, str) else tuple(self.judge)

    @property
    def judge_label(self) -> str:
        return " ".join(self.judge_specs)

    @property
    def protocol_name(self) -> str:
        """``protocol``, or the arena protocol of ``protocol_version``."""
        if self.protocol_version is None:
            return self.protocol
        if self.protocol not in ("arena", "arena-v2"):
            raise ConfigError(f"--protocol-version: only the arena protocol has versions (got --protocol "
                              f"{self.protocol})")
        if self.protocol_version not in PROTOCOL_VERSIONS:
            raise ConfigError(f"--protocol-version: must be v0.1 or v2.0, got {self.protocol_version!r}")
        return PROTOCOL_VERSIONS[self.protocol_version]

    def api_key(self) -> str | None:
        if not self.judge_key_env:
            return None
        key = os.environ.get(self.judge_key_env)
        if not key:
            raise ConfigError(f"--judge-key-env: the environment variable {self.judge_key_env} is not set")
        return key


@dataclass(frozen=True)
class EvalInputs:
    protocol: Protocol
    items: list[EvalItem]
    outputs_source: str
    reference_source: str
    outputs_reused: bool | None  # None: read from --outputs; else whether a previous generation was reused
    difficulty: list[float] | None = None  # per item, from --lc-difficulty
    left_out: str | None = None  # the line saying how many instructions had no output or no reference


@dataclass
class JudgedEval:
    """What a run produced: the summary written to ``results.json``, one result per judgment, and the last stored
    failures ``(error, reply)``."""

    summary: dict
    results: list[JudgmentResult]
    failures: list[tuple[str, str | None]]
    results_file: Path

    @property
    def too_many_failed(self) -> bool:
        return self.summary["failed_frac"] > self.summary["max_failed_frac"]


def check_settings(settings: JudgedEvalSettings) -> Protocol:
    """Everything that can be refused before reading, generating or judging anything; returns the protocol."""
    if (settings.model is None) == (settings.outputs is None):
        raise ConfigError("pass exactly one of --model (generate the outputs) or --outputs FILE")
    kinds = {judge_kind(spec) for spec in settings.judge_specs}
    if len(settings.judge_specs) > 1 and kinds != {"openai"}:
        raise ConfigError("--judge: several values must all be http(s):// URLs of one judge model")
    if (settings.price_in is None) != (settings.price_out is None):
        raise ConfigError("--price-in and --price-out go together (USD per million prompt / completion tokens)")
    protocol_name = settings.protocol_name
    if kinds == {"openai"} and not settings.judge_model:
        raise ConfigError("--judge-model is required with an OpenAI-compatible --judge URL "
                          "(the model name the server expects)")
    settings.api_key()
    check_output_dir(settings.output)
    if settings.store is not None and settings.store.is_dir():
        raise ConfigError(f"--store {settings.store}: is a directory, expected a file path")
    return load_protocol(protocol_name, judge_prompt=settings.judge_prompt)


def lock_store(settings: JudgedEvalSettings):
    """Hold the run's judgment store for this process (one run per store; a second one stops with exit 2).
    Take it before generating or judging; pass it to :func:`evaluate_judged`, which releases it."""
    settings.store_path.parent.mkdir(parents=True, exist_ok=True)
    return acquire_store_lock(settings.store_path)


def collect_inputs(settings: JudgedEvalSettings, protocol: Protocol,
                   progress: Callable[[int, int], None] | None = None) -> EvalInputs:
    """The items to judge: instructions, the model's outputs (read, or generated and saved as
    ``OUTPUT/outputs.json``, reused when model weights, settings and instructions match) and the reference's."""
    settings.output.mkdir(parents=True, exist_ok=True)
    instruction_rows = _load_instructions(settings.instructions, protocol, need=settings.model is not None)
    if settings.limit and instruction_rows is not None:
        instruction_rows = instruction_rows[:settings.limit]
    instructions = None if instruction_rows is None else [row.text for row in instruction_rows]
    reference, reference_source = _load_reference(settings.reference, protocol)
    difficulty_table = (read_difficulty_table(settings.lc_difficulty)  # every input file read before generating
                        if settings.lc_difficulty is not None else None)
    reused = None
    if settings.model is not None:
        outputs_file = settings.output / "outputs.json"
        table, reused = generate_model_outputs(
            settings.model, instructions, outputs_file, generation=settings.generation,
            progress=None if progress is None else lambda done: progress(done, len(instructions)))
        outputs_source = str(outputs_file)
    else:
        table, outputs_source = items_lib.read_outputs(settings.outputs), str(settings.outputs)
    left_out = []
    items = items_lib.match_items(instruction_rows, table, reference, outputs_source=outputs_source,
                                  reference_source=reference_source, strict=settings.strict, warn=left_out.append)
    if settings.limit:
        items = items[:settings.limit]
    difficulty = (difficulty_table.for_items([item.instruction for item in items])
                  if difficulty_table is not None else None)
    return EvalInputs(protocol, items, outputs_source, reference_source, reused, difficulty,
                      left_out[0] if left_out else None)


async def evaluate_judged(settings: JudgedEvalSettings, inputs: EvalInputs, *, judge,
                          on_result: Callable[[JudgmentResult], None] | None = None, store_lock=None) -> JudgedEval:
    """Judge ``inputs`` with ``judge`` (opened and closed by the caller), summarize, and write the run directory.
    ``store_lock``: the lock from :func:`lock_store` when the caller took it before collecting the inputs."""
    protocol, items = inputs.protocol, inputs.items
    planned = plan_judgments(protocol, items, judge_name=judge.name, seed=settings.seed)
    with JudgmentStore(settings.store_path, lock=store_lock) as store:
        results = await judge_all_async(planned, protocol=protocol, judge=judge, store=store,
                                        concurrency=settings.concurrency, max_retries=settings.max_retries,
                                        retry_delay=settings.retry_delay, max_tokens=settings.judge_max_tokens,
                                        on_result=on_result)
        failures = store.failures(3)
    summary = summarize(protocol, items, results, seed=settings.seed, bootstrap_rounds=settings.bootstrap_rounds)
    if protocol.order == "random":  # AlpacaEval's metric; Arena-Hard has style control in eval report
        summary.update(_length_control(items, results, inputs.difficulty))
    else:
        summary.update({"lc_winrate": None, "lc_standard_error": None, "lc_glm": None, "lc_features": None,
                        "lc_note": "AlpacaEval's metric; for Arena-Hard see style control in eval report"})
    summary.update(average_lengths([item.output for item in items], [item.reference for item in items]))
    summary["usage"] = usage_summary(results, price_in=settings.price_in, price_out=settings.price_out)
    summary["protocol_version"] = settings.protocol_version or ("v0.1" if protocol.name == "arena" else None)
    is_demo = bool(getattr(judge, "is_demo", False))
    summary.update({
        "judge": f"{settings.judge_label} (demo judge)" if is_demo else settings.judge_label,
        "judge_model": judge.name,
        "demo_judge": is_demo,
        "judge_note": DEMO_LABEL if is_demo else None,
        "model": str(settings.model) if settings.model is not None else items[0].generator if items else None,
        "reference": items[0].reference_generator if items else None,
        "generation": generation_record(settings.generation) if settings.model is not None else None,
        "max_failed_frac": settings.max_failed_frac,
        "store": str(settings.store_path),
        "prefcli_version": __version__,
    })
    results_file = _write_run(settings, inputs, summary, results)
    return JudgedEval(summary, results, failures, results_file)


def open_judge(settings: JudgedEvalSettings, protocol: Protocol):
    """The judge ``settings.judge`` names; close it with ``await judge.aclose()``."""
    return make_judge(list(settings.judge_specs), protocol=protocol, model=settings.judge_model,
                      api_key=settings.api_key(), timeout=settings.timeout)


def run_judged_eval(settings: JudgedEvalSettings, *,
                    generation_progress: Callable[[int, int], None] | None = None,
                    on_judge_open: Callable[[object, int], None] | None = None,
                    on_result: Callable[[JudgmentResult], None] | None = None) -> JudgedEval:
    """The whole evaluation: check, collect the inputs, open the judge, judge, write the run, close the judge.
    ``on_judge_open(judge, judgments)`` is called once the judge is open, before the first call."""
    protocol = check_settings(settings)
    store_lock = lock_store(settings)
    try:
        inputs = collect_inputs(settings, protocol, generation_progress)
        judge = open_judge(settings, protocol)
    except BaseException:
        store_lock.close()
        raise

    async def judge_and_close() -> JudgedEval:
        try:
            if on_judge_open is not None:
                on_judge_open(judge, len(inputs.items) * (2 if protocol.order == "both" else 1))
            return await evaluate_judged(settings, inputs, judge=judge, on_result=on_result, store_lock=store_lock)
        finally:
            store_lock.close()
            await judge.aclose()

    return asyncio.run(judge_and_close())


def _length_control(items: list[EvalItem], results: list[JudgmentResult], difficulty: list[float] | None) -> dict:
    """The LC winrate over the items with a score (an item's score: the weighted mean of its judgments)."""
    sums = [[0.0, 0.0] for _ in items]
    for result in results:
        if result.model_score is not None:
            sums[result.planned.item][0] += result.model_score * result.weight
            sums[result.planned.item][1] += result.weight
    preferences = [total / weight if weight else None for total, weight in sums]
    return length_controlled_winrate(preferences, [len(item.output) for item in items],
                                     [len(item.reference) for item in items], difficulty)


def _write_run(settings: JudgedEvalSettings, inputs: EvalInputs, summary: dict,
               results: list[JudgmentResult]) -> Path:
    results_file = settings.output / "results.json"
    write_json(results_file, summary)
    with atomic_open(settings.output / "judgments.jsonl") as handle:
        for row in judgment_rows(results, inputs.items):
            handle.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
    sources = (("outputs", inputs.outputs_source), ("reference", inputs.reference_source),
               ("instructions", settings.instructions))
    checksums = {name: file_checksum(path) for name, path in sources if path and Path(path).is_file()}
    protocol = inputs.protocol
    write_sidecar(results_file, seed=settings.seed, inputs=checksums, argv=["prefcli", *sys.argv[1:]],
                  config={"protocol": protocol.source, "template_version": protocol.template_version,
                          "judge": settings.judge_label, "judge_model": settings.judge_model,
                          "concurrency": settings.concurrency, "timeout": settings.timeout,
                          "max_retries": settings.max_retries, "judge_max_tokens": settings.judge_max_tokens},
                  counts={k: summary[k] for k in ("n", "judgments", "judged", "failed", "identical", "reused")})
    return results_file


def _load_instructions(instructions: str | None, protocol: Protocol, *, need: bool
                       ) -> list[items_lib.Instruction] | None:
    if instructions is None:
        if not need:
            return None
        if not protocol.instructions_hub:
            raise ConfigError(f"--instructions FILE is required (protocol {protocol.name} names no public set)")
        return [items_lib.Instruction(row["instruction"])
                for row in items_lib.load_hub_rows(protocol.instructions_hub, "instructions")]
    if Path(instructions).exists() or not looks_like_hub_id(instructions):
        return items_lib.read_instruction_rows(instructions)
    return [items_lib.Instruction(row["instruction"]) for row in
            items_lib.load_hub_rows({"id": instructions, "split": "train"}, "instructions")]


def _load_reference(reference: str | None, protocol: Protocol) -> tuple[dict, str]:
    if reference is not None and Path(reference).is_dir():
        return items_lib.read_category_references(reference, protocol.baselines), str(reference)
    if reference is not None and (Path(reference).exists() or not looks_like_hub_id(reference)):
        return items_lib.read_outputs(reference), str(reference)
    spec = {"id": reference, "split": "train"} if reference is not None else protocol.reference_hub
    if not spec:
        raise ConfigError(f"--reference FILE is required (protocol {protocol.name} names no public reference)")
    rows = items_lib.load_hub_rows(spec, "reference outputs")
    if any(not isinstance(row["output"], str) for row in rows):
        raise ConfigError(f"{spec['id']}: rows have no 'output' field; pass --reference FILE")
    return {row["instruction"]: (row["output"], str(row["generator"])) for row in rows}, spec["id"]

