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
    assert tokenizer.decode(chosen) == "The Amazon.<|end|>" and chosen[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(rejected) == "I like trains very much.<|end|>"
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
    full_completion = ChatEncoder(tokenizer, 4096, 2048).completion_ids(long_answer)
    encoder = ChatEncoder(tokenizer, max_length=40, max_prompt_length=12)
    stats = TruncationStats()
    prompt, (short, cut) = encoder.encode(MULTI_TURN, ["Yes.", long_answer], stats, example_key=0)
    assert prompt == full_prompt[-12:]  # the END: latest turn and the generation prompt survive
    assert tokenizer.decode(prompt).endswith("Another one?<|end|>\n<|assistant|>\n")
    assert cut == full_completion[:40 - 12] and cut[-1] != tokenizer.eos_token_id
    assert short[-1] == tokenizer.eos_token_id
    assert stats.as_dict() == {"truncated_prompts": 1, "truncated_completions": 1, "truncated_examples": 1}
    encoder.encode([{"role": "user", "content": "Hi"}], ["Yes."], stats, example_key=1)
    assert stats.as_dict()["truncated_examples"] == 1  # an untouched example is not counted
