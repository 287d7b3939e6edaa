"""Generation throughput of ``prefcli.generate.generate_outputs`` (length-sorted batches, left padding) on prompts
of mixed length, greedy decoding.

Measured in the same run, as peers, on the same model and prompts:
  * one-by-one ``model.generate`` (what a plain evaluation script does), and
  * the same batch size without sorting by length (batches padded to their longest prompt),
and the outputs of all three are checked to be identical (greedy decoding must not depend on batching).

    python benchmarks/generate_speed.py [--prompts 48] [--batch-size 8] [--max-new-tokens 32] [--hidden 256]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time


def make_prompts(count: int, seed: int = 0) -> list[list[dict]]:
    from prefcli.fixtures import synthetic_sentence

    rng = random.Random(seed)
    prompts = []
    for _ in range(count):
        sentences = rng.choice([1, 2, 4, 8, 16, 24])  # mixed lengths, as in AlpacaEval's instructions
        text = " ".join(synthetic_sentence(rng) for _ in range(sentences))
        prompts.append([{"role": "user", "content": text}])
    return prompts


def plain_generate(model, tokenizer, prompts, max_new_tokens: int, batch_size: int) -> list[str]:
    """The peer: batches in the given order (batch_size=1 is one-by-one)."""
    import torch

    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    replies = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], add_special_tokens=False, padding=True,
                              return_tensors="pt")
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
            new = output[:, batch["input_ids"].shape[1]:]
            for row in new.tolist():
                if tokenizer.eos_token_id in row:
                    row = row[:row.index(tokenizer.eos_token_id)]
                replies.append(tokenizer.decode(row, skip_special_tokens=True))
    return replies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the best time of each counts")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prefcli.fixtures import build_tiny_model
    from prefcli.generate import generate_outputs

    model_dir = build_tiny_model(tempfile.mkdtemp(prefix="prefcli-bench-"), hidden_size=args.hidden,
                                 num_layers=args.layers, num_heads=max(4, args.hidden // 64))
    prompts = make_prompts(args.prompts)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    lengths = [len(tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False)) for p in prompts]
    print(f"model: hidden {args.hidden}, {args.layers} layers; {args.prompts} prompts of {min(lengths)}-"
          f"{max(lengths)} characters; {args.max_new_tokens} new tokens, greedy; torch threads "
          f"{torch.get_num_threads()}")

    plain_generate(model, tokenizer, prompts[:2], 4, 2)  # warm-up
    methods = {
        "prefcli": lambda: [replies[0] for replies in generate_outputs(
            model_dir, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)],
        "unsorted batches": lambda: plain_generate(model, tokenizer, prompts, args.max_new_tokens, args.batch_size),
        "one-by-one": lambda: plain_generate(model, tokenizer, prompts, args.max_new_tokens, 1),
    }
    timings = {name: float("inf") for name in methods}
    outputs = {}
    for _ in range(args.repeats):  # rounds interleave the methods, so a burst of load elsewhere hits all of them
        for name, method in methods.items():
            start = time.perf_counter()
            outputs[name] = method()
            timings[name] = min(timings[name], time.perf_counter() - start)

    print(f"{'method':<18} {'seconds':>8} {'prompts/s':>10} {'vs prefcli':>11} {'same outputs':>13}")
    for name, seconds in timings.items():
        same = outputs[name] == outputs["prefcli"]
        print(f"{name:<18} {seconds:8.2f} {args.prompts / seconds:10.2f} {seconds / timings['prefcli']:10.2f}x "
              f"{same!s:>13}")
    print(f"best of {args.repeats} interleaved rounds; prefcli's time includes loading the model from disk, the "
          "peers' model was already loaded")


if __name__ == "__main__":
    main()
