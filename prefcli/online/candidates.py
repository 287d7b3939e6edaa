"""Generated candidate sets: sample completions per prompt from a policy at each temperature, rank them with a
judge (``prefcli.online.ranking``) and write candidate records.

Record layout (the design's candidate set, plus a ``rejected`` so one file serves every loss)::

    {"id", "prompt", "chosen": <the ranking's winner>, "candidates": [<the other completions>],
     "rejected": <one of the candidates, drawn uniformly (seeded): online DPO's random negative>,
     "meta": {"chosen_temperature", "candidate_temperatures", "judgments": [...], ...}}

``meta.judgments`` index the completions in sampling order (temperature by temperature); ``candidates`` keep that
order with the winner removed. Empty completions and exact repeats are dropped before ranking (counted in
``meta``); a prompt left with fewer than two distinct completions is skipped and counted in the sidecar. When the
trainer needs ``min_candidates`` negatives and fewer distinct ones are left, the missing ones are drawn with
replacement (seeded) from those left (``meta.refilled`` counts them), so the record still trains.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prefcli.errors import ConfigError
from prefcli.online.prompts import PromptItem, instruction_text
from prefcli.progress import Progress  # phases: "generate" (prompts × temperatures sampled), "judge" (judgments)
from prefcli.settings import JudgeSettings, SamplingSettings

SKIP_TOO_FEW = "fewer than two distinct non-empty completions"


@dataclass
class CandidateSet:
    """One prompt's distinct completions in sampling order, with the temperature of each."""

    texts: list[str]
    temperatures: list[float]
    dropped_empty: int = 0
    dropped_duplicates: int = 0


@dataclass
class GenerationResult:
    records: list[dict]
    prompts: int
    skipped: dict[str, int]
    judgments: int
    judgments_reused: int
    generation_seconds: float
    judge_seconds: float
    completions_reused: bool
    model_checksum: str | None
    refilled: int = 0
    extra: dict = field(default_factory=dict)

    def counts(self) -> dict:
        return {"prompts": self.prompts, "records": len(self.records), "judgments": self.judgments,
                "judgments_reused": self.judgments_reused}


def sample_completions(model, prompts: list[list[dict]], settings: SamplingSettings, seed: int,
                       progress: Callable[[int, int], None] | None = None) -> list[list[tuple[str, float]]]:
    """``(text, temperature)`` of every completion of every prompt, temperature by temperature. Each temperature
    has its own seed (``seed + index``) so no two temperatures share a random stream."""
    from prefcli.generate import generate_outputs

    per_prompt: list[list[tuple[str, float]]] = [[] for _ in prompts]
    total = len(prompts) * len(settings.temperatures)
    for index, temperature in enumerate(settings.temperatures):
        offset = index * len(prompts)
        kwargs = asdict(settings.params(temperature, seed + index))
        if settings.backend == "vllm":
            # vLLM keeps its GPU memory until the process ends: each engine lives in a child process, so the next
            # temperature, the judge and the training that follows get the whole GPU back.
            outputs = _generate_in_child(model, prompts, kwargs)
            if progress is not None:
                progress(offset + len(prompts), total)
        else:
            outputs = generate_outputs(
                model, prompts, **kwargs,
                progress=None if progress is None else (lambda done, offset=offset: progress(offset + done, total)))
        for slot, texts in enumerate(outputs):
            per_prompt[slot].extend((text, temperature) for text in texts)
    return per_prompt


def _child_generate(model, prompts, kwargs, result_path) -> None:
    import json

    from prefcli.errors import PrefcliError
    from prefcli.generate import generate_outputs

    try:
        result = {"outputs": generate_outputs(model, prompts, **kwargs)}
    except PrefcliError as error:
        result = {"error": str(error)}
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")


def _generate_in_child(model, prompts, kwargs):
    """``generate_outputs`` in a spawned process; a user error there is raised here with its message."""
    import json
    import multiprocessing
    import tempfile

    from prefcli.errors import PrefcliError

    with tempfile.TemporaryDirectory(prefix="prefcli-generate-") as tmp:
        result_path = Path(tmp) / "result.json"
        child = multiprocessing.get_context("spawn").Process(
            target=_child_generate, args=(str(model), prompts, kwargs, str(result_path)))
        child.start()
        child.join()
        if not result_path.is_file():
            raise PrefcliError(f"generation with {model} ({kwargs['backend']}) exited with code {child.exitcode} "
                               "before returning completions (out of memory?)")
        result = json.loads(result_path.read_text(encoding="utf-8"))
    if "error" in result:
        raise PrefcliError(result["error"])
    return result["outputs"]


def candidate_sets(samples: list[list[tuple[str, float]]]) -> list[CandidateSet]:
    """Drop empty completions and exact repeats (the first occurrence stays)."""
    sets = []
    for group in samples:
        seen: set[str] = set()
        result = CandidateSet([], [])
        for text, temperature in group:
            if not text.strip():
                result.dropped_empty += 1
            elif text in seen:
                result.dropped_duplicates += 1
            else:
                seen.add(text)
                result.texts.append(text)
                result.temperatures.append(temperature)
        sets.append(result)
    return sets


def weights_checksum(model) -> str | None:
    """The cheap fingerprint of a local model directory (file names, sizes, mtimes and config.json: what the
    reference cache keys on), which tells one checkpoint from another without reading the weights; None for a
    hub id."""
    if not Path(str(model)).is_dir():
        return None
    from prefcli.train.reference_cache import model_fingerprint

    return model_fingerprint(str(model))


def build_records(items: list[PromptItem], sets: list[CandidateSet], rankings, *, seed: int, model_label: str,
                  judge_name: str, protocol_version: str, both_orders: bool, min_candidates: int = 0) -> list[dict]:
    """Candidate records (see the module docstring) for the prompts that were ranked; each has at least
    ``min_candidates`` candidates (refilled with replacement when fewer distinct ones were left)."""
    from prefcli.data.seeding import draw_index

    records = []
    for item, candidates, ranking in zip(items, sets, rankings):
        winner = ranking.winner
        rest = [text for index, text in enumerate(candidates.texts) if index != winner]
        rest_temperatures = [t for index, t in enumerate(candidates.temperatures) if index != winner]
        distinct = len(rest)
        rejected = rest[draw_index(seed, "online-rejected", item.id, distinct)]
        while len(rest) < min_candidates:
            pick = draw_index(seed, "online-refill", f"{item.id}:{len(rest)}", distinct)
            rest.append(rest[pick])
            rest_temperatures.append(rest_temperatures[pick])
        records.append({
            "id": item.id,
            "prompt": item.prompt,
            "chosen": candidates.texts[winner],
            "rejected": rejected,
            "candidates": rest,
            "meta": {
                "source": "prefcli generate",
                "model": model_label,
                "chosen_index": winner,
                "chosen_temperature": candidates.temperatures[winner],
                "candidate_temperatures": rest_temperatures,
                "judge": judge_name,
                "protocol": protocol_version,
                "both_orders": both_orders,
                "judgments": [comparison.to_dict() for comparison in ranking.comparisons],
                "dropped_empty": candidates.dropped_empty,
                "dropped_duplicates": candidates.dropped_duplicates,
                "refilled": len(rest) - distinct,
            },
        })
    return records


def generate_candidates(model, items: list[PromptItem], settings: SamplingSettings, judge_settings: JudgeSettings,
                        *, seed: int, store_path: str | Path, api_key: str | None = None,
                        completions_cache: str | Path | None = None, min_candidates: int = 0,
                        progress: Progress | None = None) -> GenerationResult:
    """Sample, rank and build the candidate records of ``items`` with ``model`` (``seed``: sampling, order coins
    and the ``rejected`` draw; ``min_candidates``: see :func:`build_records`).

    ``completions_cache``: a JSON file holding the sampled completions; written right after sampling and reused
    when it matches (same model weights, prompts and settings), so a run that failed while judging does not sample
    again. Judge calls go through the store at ``store_path``.
    """
    from prefcli.data.atomic import write_json
    from prefcli.eval.store import JudgmentStore
    from prefcli.online.ranking import count_judgments, rank_candidates

    settings.check()
    judge_settings.check()  # a bad judge spec or protocol fails before minutes of sampling
    checksum = weights_checksum(model)
    prompts = [item.prompt for item in items]
    identity = {"model": str(model), "model_checksum": checksum, "settings": settings.to_dict(), "seed": seed,
                "prompt_ids": [item.id for item in items]}
    samples = _load_cache(completions_cache, identity)
    reused = samples is not None
    started = time.perf_counter()
    if samples is None:
        samples = sample_completions(model, prompts, settings, seed,
                                     None if progress is None else lambda d, t: progress("generate", d, t))
        if completions_cache is not None:
            write_json(completions_cache, {**identity, "completions": samples})
    generation_seconds = time.perf_counter() - started
    _free_accelerator_memory()  # the policy is gone; a local judge model may need the room

    sets = candidate_sets(samples)
    keep = [index for index, found in enumerate(sets) if len(found.texts) >= 2]
    skipped = {SKIP_TOO_FEW: len(sets) - len(keep)} if len(keep) < len(sets) else {}
    kept_items, kept_sets = [items[i] for i in keep], [sets[i] for i in keep]
    instructions = [instruction_text(item.prompt) for item in kept_items]
    texts = [found.texts for found in kept_sets]
    if not kept_items:
        raise ConfigError(f"no prompt has two distinct non-empty completions (of {len(items)}); raise "
                          "--max-new-tokens, --temperatures or --per-temperature")
    started = time.perf_counter()
    judge, protocol = judge_settings.open(api_key)
    with JudgmentStore(store_path) as store:
        rankings = rank_candidates(
            instructions, texts, judge=judge, protocol=protocol, store=store,
            both_orders=judge_settings.both_orders, seed=seed, concurrency=judge_settings.concurrency,
            max_retries=judge_settings.max_retries, retry_delay=judge_settings.retry_delay,
            max_tokens=judge_settings.judge_max_tokens,
            progress=None if progress is None else lambda d, t: progress("judge", d, t))
    judge_seconds = time.perf_counter() - started
    records = build_records(kept_items, kept_sets, rankings, seed=seed, model_label=str(model),
                            judge_name=judge.name, protocol_version=protocol.template_version,
                            both_orders=judge_settings.both_orders, min_candidates=min_candidates)
    comparisons = [c for ranking in rankings for c in ranking.comparisons]
    judgments = count_judgments(texts, judge_settings.both_orders)
    return GenerationResult(records, len(items), skipped, judgments, sum(c.reused for c in comparisons),
                            generation_seconds, judge_seconds, reused, checksum,
                            refilled=sum(record["meta"]["refilled"] > 0 for record in records),
                            extra={"judge_model": judge.name, "demo_judge": bool(getattr(judge, "is_demo", False)),
                                   "protocol": protocol.template_version})


def write_candidates(path: str | Path, result: GenerationResult, *, config: dict, inputs: dict,
                     argv: list[str] | None = None) -> Path:
    """Write the records atomically (temporary file, then rename), then the ``.meta.json`` sidecar."""
    import json

    from prefcli.data.atomic import atomic_open
    from prefcli.data.sidecar import write_sidecar

    path = Path(path)
    with atomic_open(path) as handle:
        for record in result.records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    counts = {**result.counts(), "refilled_records": result.refilled,
              "generation_seconds": round(result.generation_seconds, 3),
              "judge_seconds": round(result.judge_seconds, 3), "completions_reused": result.completions_reused}
    write_sidecar(path, config={**config, "model_checksum": result.model_checksum, **result.extra},
                  seed=config.get("seed"), inputs=inputs, counts=counts, skipped=result.skipped, argv=argv)
    return path


def _load_cache(path, identity: dict):
    import json

    if path is None or not Path(path).is_file():
        return None
    try:
        cached = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if any(cached.get(key) != value for key, value in identity.items()):
        return None
    return [[(text, float(temperature)) for text, temperature in group] for group in cached["completions"]]


def _free_accelerator_memory() -> None:
    """Return cached GPU memory between the phases (sampling, judging, training) of a run."""
    import gc

    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
