"""Chat-template tokenization: prompt rendering, BOS handling, completion masks and the truncation policy."""

from __future__ import annotations

import pytest

from prefcli.train.collate import collate
from prefcli.train.tokenize import ChatEncoder, TruncationStats

MULTI_TURN = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a river."},
    {"role": "assistant", "content": "The Nile."},
    {"role": "user", "content": "Another one?"},
]


@pytest.fixture(scope="module")
def tokenizers(tiny_model, tiny_model_no_bos):
    from transformers import AutoTokenizer

    return {"bos": AutoTokenizer.from_pretrained(tiny_model),
            "no_bos": AutoTokenizer.from_pretrained(tiny_model_no_bos)}


@pytest.mark.parametrize("which", ["bos", "no_bos"])
def test_prompt_is_the_rendered_template_with_one_bos_at_most(tokenizers, which):
    tokenizer = tokenizers[which]
    encoder = ChatEncoder(tokenizer, max_length=512, max_prompt_length=256)
    prompt = encoder.prompt_ids(MULTI_TURN)
    # written out: what the template renders for generation, tokens of every turn in order
    expected_text = ("<s>" if which == "bos" else "") + "".join(
        f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in MULTI_TURN) + "<|assistant|>\n"
    assert tokenizer.decode(prompt) == expected_text
    bos = tokenizer.bos_token_id
    if which == "bos":
        assert prompt[0] == bos and prompt[1] != bos  # the template's BOS, not doubled by the encoder
    else:
        assert bos is None or bos not in prompt


@pytest.mark.parametrize("which", ["bos", "no_bos"])
def test_labels_cover_exactly_the_completion_and_eos(tokenizers, which):
    tokenizer = tokenizers[which]
    encoder = ChatEncoder(tokenizer, max_length=512, max_prompt_length=256)
    prompt, (chosen, rejected) = encoder.encode(MULTI_TURN, ["The Amazon.", "I like trains very much."])
    # the assistant turn as the template renders it: content, end of turn, the newline after it
    assert tokenizer.decode(chosen) == "The Amazon.<|end|>\n" and chosen[-2] == tokenizer.eos_token_id
    assert tokenizer.decode(rejected) == "I like trains very much.<|end|>\n"
    batch = collate([prompt], [(0, chosen), (0, rejected)], tokenizer.pad_token_id, full=True)
    for row, completion in enumerate((chosen, rejected)):
        ids = batch.full_ids[row].tolist()
        start = int(batch.prompt_lengths[batch.row_prompt[row]])
        length = int(batch.full_lengths[row])
        # scored positions = [start, length): the completion; before it the prompt, after it padding
        assert ids[:start] == prompt
        assert ids[start:length] == completion
        assert set(ids[length:]) <= {tokenizer.pad_token_id}
        assert batch.completion_ids[row, :len(completion)].tolist() == completion
    assert batch.full_ids.shape[1] == len(prompt) + len(rejected)  # padded to the longest row only


def test_truncation_keeps_the_end_of_the_prompt_then_cuts_the_completion(tokenizers):
    tokenizer = tokenizers["bos"]
    full_prompt = ChatEncoder(tokenizer, 4096, 2048).prompt_ids(MULTI_TURN)
    long_answer = " ".join(["river"] * 60)
    full_completion = ChatEncoder(tokenizer, 4096, 2048).completion_ids(MULTI_TURN, long_answer)
    encoder = ChatEncoder(tokenizer, max_length=40, max_prompt_length=12)
    stats = TruncationStats()
    prompt, (short, cut) = encoder.encode(MULTI_TURN, ["Yes.", long_answer], stats, example_key=0)
    # the END (latest turn and the generation prompt) survives, behind the BOS the model always starts from
    assert prompt == [tokenizer.bos_token_id] + full_prompt[-11:] and len(prompt) == 12
    assert tokenizer.decode(prompt).endswith("Another one?<|end|>\n<|assistant|>\n")
    assert cut == full_completion[:40 - 12] and tokenizer.eos_token_id not in cut
    assert short[-2] == tokenizer.eos_token_id
    assert stats.as_dict() == {"truncated_prompts": 1, "truncated_completions": 1, "truncated_examples": 1,
                               "template_fallbacks": 0, "examples_checked": 1}
    encoder.encode([{"role": "user", "content": "Hi"}], ["Yes."], stats, example_key=1)
    assert stats.as_dict()["truncated_examples"] == 1  # an untouched example is not counted


def test_truncation_without_bos_keeps_only_the_end(tokenizers):
    tokenizer = tokenizers["no_bos"]
    full_prompt = ChatEncoder(tokenizer, 4096, 2048).prompt_ids(MULTI_TURN)
    prompt, _ = ChatEncoder(tokenizer, max_length=40, max_prompt_length=12).encode(MULTI_TURN, ["Yes."])
    assert prompt == full_prompt[-12:]


def test_keeping_bos_on_truncation_changes_what_the_model_scores(tiny_model, tokenizers):
    """The fidelity bug: a cut prompt without its BOS is a context the model never saw in training."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = tokenizers["bos"]
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    encoder = ChatEncoder(tokenizer, max_length=64, max_prompt_length=12)
    prompt, (completion,) = encoder.encode(MULTI_TURN, ["The Nile again."])
    without_bos = ChatEncoder(tokenizer, 4096, 2048).prompt_ids(MULTI_TURN)[-12:]
    assert prompt[0] == tokenizer.bos_token_id and without_bos[0] != tokenizer.bos_token_id

    def completion_logp(prefix):
        ids = torch.tensor([prefix + completion])
        with torch.no_grad():
            logits = model(ids).logits
        logps = logits.log_softmax(-1)[0, len(prefix) - 1:-1]
        return float(logps.gather(1, torch.tensor(completion)[:, None]).sum())

    assert abs(completion_logp(prompt) - completion_logp(without_bos)) > 1e-3


# ---- chat templates of the common model families, written locally -------------------------------------------
LLAMA3 = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
          "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
CHATML = ("{% if messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
          "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
           "message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + "
           "eos_token }}{% endif %}{% endfor %}")
GEMMA = ("{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' "
         "else message['role'] %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + "
         "'<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}")

FAMILIES = {
    # name: (template, bos, eos, other special tokens, how the assistant turn of "The Amazon." ends)
    "llama3": (LLAMA3, "<|begin_of_text|>", "<|end_of_text|>", ["<|start_header_id|>", "<|end_header_id|>",
                                                                 "<|eot_id|>"], "The Amazon.<|eot_id|>"),
    "chatml": (CHATML, None, "<|endoftext|>", ["<|im_start|>", "<|im_end|>"], "The Amazon.<|im_end|>\n"),
    "mistral": (MISTRAL, "<s>", "</s>", [], "The Amazon.</s>"),
    "gemma": (GEMMA, "<bos>", "<eos>", ["<start_of_turn>", "<end_of_turn>"], "The Amazon.<end_of_turn>\n"),
}
TWO_TURNS = [{"role": "user", "content": "Name a river."}, {"role": "assistant", "content": "The Nile."},
             {"role": "user", "content": "Another one?"}]


def family_tokenizer(name: str):
    from prefcli.fixtures import build_tokenizer

    template, bos, eos, specials, _ = FAMILIES[name]
    tokenizer = build_tokenizer(add_bos=False)
    tokens = {"eos_token": eos, "additional_special_tokens": specials}
    if bos is not None:
        tokens["bos_token"] = bos
    tokenizer.add_special_tokens(tokens)
    if bos is None:
        tokenizer.bos_token = None
    tokenizer.chat_template = template
    return tokenizer


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_completion_ends_with_the_templates_end_of_turn(family):
    tokenizer = family_tokenizer(family)
    expected_end = FAMILIES[family][4]
    encoder = ChatEncoder(tokenizer, max_length=512, max_prompt_length=256)
    stats = TruncationStats()
    prompt, (chosen, padded) = encoder.encode(TWO_TURNS, ["The Amazon.", "  The Amazon.  "], stats, 0)
    assert tokenizer.decode(chosen) == expected_end
    # the end of turn is the special token itself, not its characters spelled out
    end_token = expected_end.removeprefix("The Amazon.").removesuffix("\n")
    assert tokenizer.convert_tokens_to_ids(end_token) in chosen
    # prefix-consistent: prompt + completion are the tokens of the whole conversation rendered by the template
    conversation = TWO_TURNS + [{"role": "assistant", "content": "The Amazon."}]
    whole = tokenizer.apply_chat_template(conversation, tokenize=False)
    assert tokenizer.decode(prompt + chosen) == whole
    assert prompt + chosen == tokenizer(whole, add_special_tokens=False)["input_ids"]
    if "trim" in FAMILIES[family][0]:
        assert padded == chosen  # the template trims the content; so does the completion
    assert stats.template_fallbacks == 0


def test_template_that_does_not_extend_the_prompt_falls_back_to_eos():
    tokenizer = family_tokenizer("mistral")
    # renders a different header when no generation prompt is asked for: not prefix-consistent
    tokenizer.chat_template = ("{% if add_generation_prompt %}A:{% else %}B:{% endif %}{% for m in messages %}"
                               "{{ m['content'] }}{% endfor %}")
    stats = TruncationStats()
    _, (chosen,) = ChatEncoder(tokenizer, 512, 256).encode(TWO_TURNS, ["The Amazon."], stats, 0)
    assert tokenizer.decode(chosen) == "The Amazon.</s>"
    assert stats.template_fallbacks == 1
