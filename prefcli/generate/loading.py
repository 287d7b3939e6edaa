"""Find out what a model path is (a full HF model directory, a LoRA/PEFT adapter directory, or a hub id) and
load it for inference. Generation and the lm-eval harness both start here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from prefcli.errors import ConfigError, PrefcliError
from prefcli.hub import looks_like_hub_id

_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model")


@dataclass(frozen=True)
class ModelRef:
    """Where the weights come from. ``adapter`` is set for a PEFT adapter directory, whose frozen base model is
    ``base`` (read from ``adapter_config.json``); ``tokenizer`` is the adapter directory when it carries its own
    tokenizer (``prefcli train`` saves one there), else the base."""

    path: str
    base: str
    adapter: str | None
    tokenizer: str

    @property
    def is_adapter(self) -> bool:
        return self.adapter is not None


def resolve_model(model_path: str | Path) -> ModelRef:
    """Classify ``model_path``; raise ``PrefcliError`` for a local path that is not a model."""
    text = str(model_path)
    path = Path(text).expanduser()
    if not path.exists():
        if looks_like_hub_id(text):
            return ModelRef(path=text, base=text, adapter=None, tokenizer=text)
        raise PrefcliError(f"{text}: model directory not found")
    if not path.is_dir():
        raise PrefcliError(f"{text}: not a model directory (expected a directory with config.json "
                           "or adapter_config.json)")
    adapter_config = path / "adapter_config.json"
    if adapter_config.is_file():
        try:
            config = json.loads(adapter_config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise PrefcliError(f"{adapter_config}: cannot read adapter config: {error}") from None
        base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
        if not isinstance(base, str) or not base:
            raise PrefcliError(f"{adapter_config}: base_model_name_or_path: missing, cannot find the base model "
                               "of this adapter")
        has_tokenizer = any((path / name).is_file() for name in _TOKENIZER_FILES)
        return ModelRef(path=str(path), base=base, adapter=str(path),
                        tokenizer=str(path) if has_tokenizer else base)
    if (path / "config.json").is_file():
        return ModelRef(path=str(path), base=str(path), adapter=None, tokenizer=str(path))
    raise PrefcliError(f"{text}: not a model directory (no config.json or adapter_config.json)")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(ref: ModelRef, padding_side: str = "left"):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(ref.tokenizer)
    except (OSError, ValueError) as error:
        raise PrefcliError(f"{ref.tokenizer}: cannot load tokenizer: {_first_line(error)}") from None
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ConfigError(f"{ref.tokenizer}: tokenizer has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(ref: ModelRef, device: str, dtype: str = "auto"):
    """Load the model for inference (eval mode). An adapter is merged into its base: generation is then as fast
    as with a full model, and the result is the same function."""
    from transformers import AutoModelForCausalLM

    torch_dtype = _torch_dtype(dtype, device)
    try:
        model = AutoModelForCausalLM.from_pretrained(ref.base, dtype=torch_dtype)
        if ref.is_adapter:
            try:
                from peft import PeftModel
            except ImportError:
                raise ConfigError(f"{ref.adapter} is a PEFT adapter: install peft (pip install 'prefcli[lora]')") \
                    from None
            model = PeftModel.from_pretrained(model, ref.adapter).merge_and_unload()
    except (OSError, ValueError) as error:
        raise PrefcliError(f"{ref.path}: cannot load model: {_first_line(error)}") from None
    return model.to(device).eval()


def _torch_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        # float32 on CPU (bf16 matmuls are slow there and change greedy outputs); the checkpoint's dtype elsewhere.
        return torch.float32 if device == "cpu" else "auto"
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in names:
        raise ConfigError(f"dtype: must be one of auto, {', '.join(names)}; got {dtype!r}")
    return names[dtype]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
