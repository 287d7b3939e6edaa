"""Decoding settings: one generation call (:class:`GenerationParams`, what ``generate_outputs`` runs) and the
candidate sampling of the online loop and ``prepare generate`` (:class:`SamplingSettings`: several temperatures,
several completions at each)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from prefcli.errors import ConfigError
from prefcli.settings.check import check_values
from prefcli.settings.fields import flag_for, setting

BACKENDS = ("hf", "vllm")
#: Seeds reach ``torch.manual_seed``, which takes unsigned 64-bit values.
SEED_RANGE = {"low": 0, "high": 2**64 - 1}


def max_new_tokens_setting(default: int = 512):
    return setting(default, "Longest completion, in tokens.", low=1)


def top_p_setting():
    return setting(1.0, "Nucleus sampling p.", low=0.0, low_open=True, high=1.0)


def backend_setting():
    return setting("hf", "Generation backend: hf (transformers) or vllm.", choices=BACKENDS)


@dataclass(frozen=True)
class GenerationParams:
    """Decoding parameters of one ``generate_outputs`` call. ``temperature == 0`` means greedy decoding (then
    ``top_p`` and ``seed`` are unused); otherwise nucleus sampling with ``top_p``, seeded with ``seed``. Generation
    stops at the model's EOS token(s) or after ``max_new_tokens``."""

    max_new_tokens: int = max_new_tokens_setting()
    temperature: float = setting(0.0, "Sampling temperature (0: greedy).", low=0.0)
    top_p: float = top_p_setting()
    batch_size: int = setting(8, "Prompts per generation batch.", low=1)
    seed: int = setting(0, "Seed of sampling.", **SEED_RANGE)
    backend: str = backend_setting()
    num_return_sequences: int = setting(1, "Completions per prompt.", low=1)

    def __post_init__(self) -> None:
        for name, kind in (("max_new_tokens", int), ("batch_size", int), ("seed", int),
                           ("num_return_sequences", int), ("temperature", (int, float)), ("top_p", (int, float))):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ConfigError(f"{name}: must be {'an integer' if kind is int else 'a number'}, got {value!r}")
        check_values(self, {name: name for name in asdict(self)})
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


@dataclass(frozen=True)
class SamplingSettings:
    """How candidates are sampled (the MC-PO paper: two completions at each of 0.6, 0.8 and 1.0)."""

    temperatures: tuple[float, ...] = setting((0.6, 0.8, 1.0), "Comma-separated sampling temperatures.",
                                              low=0.0, default_text="0.6,0.8,1.0")
    per_temperature: int = setting(2, "Completions sampled at each temperature.", low=1)
    max_new_tokens: int = max_new_tokens_setting()
    top_p: float = top_p_setting()
    gen_batch_size: int = setting(8, "Prompts per generation batch.", low=1)
    backend: str = backend_setting()

    @property
    def completions_per_prompt(self) -> int:
        return len(self.temperatures) * self.per_temperature

    def check(self, rename: dict[str, str] | None = None) -> None:
        """Values and combinations; ``rename`` spells a flag the way the command in use does."""
        check_values(self, rename)

        def name(field: str) -> str:
            return flag_for(SamplingSettings, field, rename)

        if not self.temperatures:
            raise ConfigError(f"{name('temperatures')}: give at least one temperature, e.g. 0.6,0.8,1.0")
        if 0 in self.temperatures and self.per_temperature > 1:
            raise ConfigError(f"{name('temperatures')}: temperature 0 is greedy decoding, which returns copies; "
                              f"use it only with {name('per_temperature')} 1")
        if len(set(self.temperatures)) != len(self.temperatures):
            raise ConfigError(f"{name('temperatures')}: a temperature is listed twice; raise "
                              f"{name('per_temperature')} instead")
        if self.completions_per_prompt < 2:
            raise ConfigError(f"{name('temperatures')} × {name('per_temperature')}: {self.completions_per_prompt} "
                              "completion per prompt; ranking needs at least two (e.g. --per-temperature 2)")

    def params(self, temperature: float, seed: int) -> GenerationParams:
        """The generation call of one temperature."""
        return GenerationParams(max_new_tokens=self.max_new_tokens, temperature=temperature, top_p=self.top_p,
                                batch_size=self.gen_batch_size, seed=seed, backend=self.backend,
                                num_return_sequences=self.per_temperature)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["temperatures"] = list(self.temperatures)
        return values
