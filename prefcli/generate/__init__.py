"""Batched generation of assistant replies for chat prompts, with the model's own chat template.

``generate_outputs`` is what the judged evaluation (``prefcli eval alpaca|arena --model``) and the online MC-PO loop
call. Backends: ``hf`` (transformers ``generate``; works everywhere) and ``vllm`` (when the ``vllm`` package is
installed). The parameters of a run are a ``GenerationParams``; write ``params.to_dict(model_path)`` next to the
outputs so a result can always be traced to how it was generated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from prefcli.errors import ConfigError

BACKENDS = ("hf", "vllm")


@dataclass(frozen=True)
class GenerationParams:
    """Decoding parameters. ``temperature == 0`` means greedy decoding (then ``top_p`` and ``seed`` are unused);
    otherwise nucleus sampling with ``top_p``, seeded with ``seed``. Generation stops at the model's EOS token(s)
    or after ``max_new_tokens``."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    batch_size: int = 8
    seed: int = 0
    backend: str = "hf"
    num_return_sequences: int = 1

    def __post_init__(self) -> None:
        checks = [
            ("max_new_tokens", isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1, "an integer >= 1"),
            ("temperature", isinstance(self.temperature, (int, float)) and self.temperature >= 0, "a number >= 0"),
            ("top_p", isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1, "a number in (0, 1]"),
            ("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "an integer >= 1"),
            ("seed", isinstance(self.seed, int), "an integer"),
            ("backend", self.backend in BACKENDS, f"one of {', '.join(BACKENDS)}"),
            ("num_return_sequences", isinstance(self.num_return_sequences, int) and self.num_return_sequences >= 1,
             "an integer >= 1"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"{name}: must be {expected}, got {getattr(self, name)!r}")
        if self.num_return_sequences > 1 and not self.do_sample:
            raise ConfigError("num_return_sequences: more than one sequence per prompt needs sampling "
                              "(temperature > 0); greedy decoding would return copies")

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0

    def to_dict(self, model_path=None) -> dict:
        """A JSON-ready record of the run (``decoding`` says greedy or sampling)."""
        from prefcli import __version__

        record = {"model": None if model_path is None else str(model_path), **asdict(self),
                  "decoding": "sampling" if self.do_sample else "greedy", "prefcli_version": __version__}
        if model_path is None:
            del record["model"]
        return record


def generate_outputs(model_path, prompts: list[list[dict]], *, max_new_tokens: int = 512, temperature: float = 0.0,
                     top_p: float = 1.0, batch_size: int = 8, seed: int = 0, backend: str = "hf",
                     num_return_sequences: int = 1,
                     progress: Callable[[int], None] | None = None) -> list[str] | list[list[str]]:
    """Generate one reply per prompt (a list of ``str`` in prompt order), or ``num_return_sequences`` replies per
    prompt (a list of lists) when more than one is asked for.

    ``model_path`` is a full HF model directory, a PEFT/LoRA adapter directory (its base model is read from
    ``adapter_config.json``) or a hub id. Each prompt is a list of chat messages (a plain string is one user
    turn), rendered with the tokenizer's chat template and ``add_generation_prompt=True``. Only the new tokens are
    decoded, with special tokens skipped. ``progress(n_done)`` is called with the number of prompts finished.
    """
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                              batch_size=batch_size, seed=seed, backend=backend,
                              num_return_sequences=num_return_sequences)
    conversations = normalize_prompts(prompts)
    if not conversations:
        return []
    from prefcli.generate.loading import resolve_model

    if params.backend == "vllm":
        from prefcli.generate.vllm_backend import generate_vllm, require_vllm

        require_vllm()
        replies = generate_vllm(resolve_model(model_path), conversations, params, progress)
    else:
        from prefcli.generate.hf_backend import generate_hf

        replies = generate_hf(resolve_model(model_path), conversations, params, progress)
    return replies if params.num_return_sequences > 1 else [group[0] for group in replies]


def normalize_prompts(prompts) -> list[list[dict]]:
    """Check every prompt against the record contract; a bad one is a ``ConfigError`` naming its index."""
    from prefcli.data.records import RecordError, normalize_prompt

    if isinstance(prompts, (str, dict)) or not hasattr(prompts, "__iter__"):
        raise ConfigError("prompts: must be a list of prompts (each a list of chat messages or a string)")
    conversations = []
    for index, prompt in enumerate(prompts):
        try:
            conversations.append(normalize_prompt(prompt))
        except RecordError as error:
            where = error.field.replace("prompt", f"prompts[{index}]", 1)
            raise ConfigError(f"{where}: {error}") from None
    return conversations


__all__ = ["BACKENDS", "GenerationParams", "generate_outputs", "normalize_prompts"]
