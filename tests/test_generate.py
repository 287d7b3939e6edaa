"""Batched generation: batching and sorting must not change greedy outputs; sampling is reproducible from the
seed; adapters generate what their merged model generates; bad input is a clear error."""

from __future__ import annotations

import importlib.util

import pytest

from prefcli.errors import ConfigError, PrefcliError
from prefcli.generate import GenerationParams, generate_outputs

PROMPTS = [
    [{"role": "user", "content": "Explain why the river is blue. " * repeat}] for repeat in (3, 1, 5, 2, 1, 4)
] + [
    "Write a short poem.",  # a plain string is one user turn
    [{"role": "system", "content": "Be clear."}, {"role": "user", "content": "List three trees."},
     {"role": "assistant", "content": "Oak, pine, elm."}, {"role": "user", "content": "Two more?"}],
]


def test_batched_greedy_equals_one_by_one(tiny_model):
    seen = []
    batched = generate_outputs(tiny_model, PROMPTS, max_new_tokens=12, batch_size=3, progress=seen.append)
    single = [generate_outputs(tiny_model, [prompt], max_new_tokens=12, batch_size=1)[0] for prompt in PROMPTS]
    assert batched == single
    assert all(len(replies) == 1 and isinstance(replies[0], str) for replies in batched)  # one shape: a list each
    batched = [replies[0] for replies in batched]
    assert len(set(batched)) > 1  # different prompts, different replies: order really was restored
    assert seen == [3, 6, 8]


def test_reply_is_only_new_tokens_cut_at_eos(tiny_model):
    """Greedy reply equals decoding the model's own argmax continuation of the chat-templated prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    messages = [{"role": "user", "content": "Name a city."}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<s><|user|>\n") and text.endswith("<|assistant|>\n")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1
    new = []
    with torch.no_grad():
        for _ in range(10):
            token = int(model(torch.tensor([ids + new])).logits[0, -1].argmax())
            if token == tokenizer.eos_token_id:
                break
            new.append(token)
    expected = tokenizer.decode(new, skip_special_tokens=True)
    assert generate_outputs(tiny_model, [messages], max_new_tokens=10) == [[expected]]


def test_sampling_is_seeded_and_multi_return_shape(tiny_model):
    import torch

    kwargs = {"max_new_tokens": 10, "temperature": 1.0, "top_p": 0.95, "batch_size": 4, "num_return_sequences": 3}
    state = torch.random.get_rng_state()
    first = generate_outputs(tiny_model, PROMPTS[:5], seed=7, **kwargs)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is untouched
    again = generate_outputs(tiny_model, PROMPTS[:5], seed=7, **kwargs)
    other = generate_outputs(tiny_model, PROMPTS[:5], seed=8, **kwargs)
    assert first == again
    assert first != other
    assert len(first) == 5 and all(isinstance(group, list) and len(group) == 3 for group in first)
    assert all(isinstance(text, str) for group in first for text in group)
    assert any(len(set(group)) > 1 for group in first)  # three independent samples, not copies


def test_lora_adapter_generates_like_its_merged_model(tiny_model, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    adapter_dir, merged_dir = tmp_path / "adapter", tmp_path / "merged"
    peft_model.save_pretrained(adapter_dir)  # no tokenizer here: it must come from the base
    peft_model.merge_and_unload().save_pretrained(merged_dir)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(merged_dir)

    from_adapter = generate_outputs(adapter_dir, PROMPTS[:4], max_new_tokens=8, batch_size=2)
    assert from_adapter == generate_outputs(merged_dir, PROMPTS[:4], max_new_tokens=8, batch_size=2)
    assert from_adapter != generate_outputs(tiny_model, PROMPTS[:4], max_new_tokens=8, batch_size=2)


def test_params_record_and_validation():
    params = GenerationParams(max_new_tokens=64, temperature=0.7, seed=3, num_return_sequences=2)
    record = params.to_dict("runs/model")
    assert record["model"] == "runs/model" and record["decoding"] == "sampling"
    assert record["temperature"] == 0.7 and record["num_return_sequences"] == 2 and record["backend"] == "hf"
    assert GenerationParams().to_dict()["decoding"] == "greedy"
    with pytest.raises(ConfigError, match="top_p"):
        GenerationParams(top_p=0)
    with pytest.raises(ConfigError, match="num_return_sequences"):
        GenerationParams(num_return_sequences=2)  # greedy copies
    for bad, match in (({"seed": 2**64}, "seed: must be in"), ({"seed": -1}, "seed: must be in"),
                       ({"temperature": float("inf")}, "temperature: must be a finite number"),
                       ({"backend": "tgi"}, "backend: must be one of hf, vllm"), ({"batch_size": 1.5}, "batch_size")):
        with pytest.raises(ConfigError, match=match):
            GenerationParams(**bad)


def test_bad_inputs_are_clear_errors(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match=r"prompts\[1\]\[0\]\.role"):
        generate_outputs(tiny_model, ["fine", [{"role": "robot", "content": "x"}]])
    with pytest.raises(PrefcliError, match="not a model directory"):
        generate_outputs(tmp_path, ["hello"])
    with pytest.raises(PrefcliError, match="model directory not found"):
        generate_outputs(tmp_path / "missing", ["hello"])
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ConfigError, match="vllm package is not installed"):
            generate_outputs(tiny_model, ["hello"], backend="vllm")
    assert generate_outputs(tiny_model, []) == []
