"""The token cache and record index: hits, misses on every input they depend on, incremental growth, and a
killed writer whose partial cache is never trusted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from train_helpers import write_pairs, write_unpaired

from prefcli.losses import get_loss
from prefcli.train.data import build_examples, load_records
from prefcli.train.sampler import BatchPlan
from prefcli.train.tokenize import ChatEncoder


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def _build(data, tokenizer, cache, needed=None, loss="mcpo", max_length=96, **loss_args):
    loss_module = get_loss(loss, **({"negatives": 2} if loss == "mcpo" else {}), **loss_args)
    loaded = load_records(data, loss_module, loss, cache_dir=cache)
    return build_examples(loaded, ChatEncoder(tokenizer, max_length, max_length // 2), needed, cache_dir=cache)


def _as_lists(examples, indices=None):
    indices = range(len(examples)) if indices is None else indices
    return [(examples[i].prompt, examples[i].completions, examples[i].kl_completion, examples[i].label,
             examples[i].source_line) for i in indices]


def test_cached_examples_equal_fresh_ones_and_a_rerun_tokenizes_nothing(tokenizer, tmp_path):
    data = write_pairs(tmp_path / "d.jsonl", rows=40, candidates=3)
    fresh, fresh_stats = _build(data, tokenizer, None)
    first, _ = _build(data, tokenizer, tmp_path / "cache")
    assert first.tokenized_now == 40
    again, stats = _build(data, tokenizer, tmp_path / "cache")
    assert again.tokenized_now == 0 and again.loaded.index_cached
    assert _as_lists(again) == _as_lists(fresh)
    assert stats.as_dict() == fresh_stats.as_dict()
    assert len(list((tmp_path / "cache").glob("tokens-*"))) == 1


def test_a_run_tokenizes_what_it_needs_and_a_longer_one_adds_to_the_cache(tokenizer, tmp_path):
    data = write_pairs(tmp_path / "d.jsonl", rows=64, candidates=3)
    plan = BatchPlan([None] * 64, 4, 1, 0, seed=0, unpaired=False)
    two_steps = plan.global_indices(2)
    assert len(two_steps) == 8 and two_steps == plan.local_batch(0) + plan.local_batch(1)
    short, _ = _build(data, tokenizer, tmp_path / "cache", needed=two_steps)
    assert short.tokenized_now == 8 and sum(short.store.has(i) for i in range(64)) == 8
    longer, _ = _build(data, tokenizer, tmp_path / "cache", needed=plan.global_indices(5))
    assert longer.tokenized_now == 12  # 20 examples for 5 steps, 8 of them already cached
    fresh, _ = _build(data, tokenizer, None)
    assert _as_lists(longer, plan.global_indices(5)) == _as_lists(fresh, plan.global_indices(5))
    # an example no step asked for is tokenized on first access, correctly, with the next missing ones
    outside = next(i for i in range(64) if not longer.store.has(i))
    reports = []
    longer.progress = lambda *args: reports.append(args)
    assert _as_lists(longer, [outside]) == _as_lists(fresh, [outside])
    assert longer.store.stored() == 64 and reports == [("tokenize", 64, 64)]


def test_plan_indices_span_epochs_and_every_process(tokenizer):
    plan = BatchPlan([None] * 10, 2, 2, 1, seed=3, unpaired=False)  # 2 processes: a global batch of 4
    assert plan.global_indices(2) == [i for step in range(2) for r in range(2)
                                      for i in BatchPlan([None] * 10, 2, 2, r, seed=3, unpaired=False)
                                      .local_batch(step)]
    assert sorted(plan.global_indices(100)) == list(range(10))


@pytest.mark.parametrize("change", ["tokenizer", "template", "data", "max_length"])
def test_every_input_of_the_tokens_is_part_of_the_key(change, tokenizer, tmp_path):
    from prefcli.fixtures import build_tokenizer

    data = write_pairs(tmp_path / "d.jsonl", rows=16, candidates=3)
    cache = tmp_path / "cache"
    _build(data, tokenizer, cache)
    other_tokenizer, max_length = tokenizer, 96
    if change == "tokenizer":
        other_tokenizer = build_tokenizer(vocab_size=600)
    elif change == "template":
        other_tokenizer = build_tokenizer()
        other_tokenizer.chat_template = other_tokenizer.chat_template.replace("<|end|>\n", "<|end|>")
    elif change == "data":
        lines = data.read_text(encoding="utf-8").splitlines(keepends=True)
        data.write_text("".join(lines[1:] + lines[:1]), encoding="utf-8")  # same records, other order
    else:
        max_length = 80
    if change == "tokenizer" or change == "template":  # the unchanged tokenizer first: it still hits
        assert _build(data, build_tokenizer(), cache)[0].tokenized_now == 0
    examples, _ = _build(data, other_tokenizer, cache, max_length=max_length)
    assert examples.tokenized_now == 16
    assert len(list(cache.glob("tokens-*"))) == 2
    assert _as_lists(examples) == _as_lists(_build(data, other_tokenizer, None, max_length=max_length)[0])


def test_a_changed_data_file_is_reindexed_and_checked_again(tokenizer, tmp_path):
    data = write_pairs(tmp_path / "d.jsonl", rows=8, candidates=3)
    first = load_records(data, get_loss("dpo"), "dpo", cache_dir=tmp_path / "cache")
    assert not first.index_cached
    assert load_records(data, get_loss("dpo"), "dpo", cache_dir=tmp_path / "cache").index_cached
    with data.open("a", encoding="utf-8") as handle:
        handle.write('{"id": 9, "prompt": "hi", "chosen": "a"}\n')
    with pytest.raises(Exception, match=r"d.jsonl:9: candidates: .*|d.jsonl:9: rejected: .*"):
        load_records(data, get_loss("dpo"), "dpo", cache_dir=tmp_path / "cache")


def test_unpaired_examples_pair_each_completion_with_another_records(tokenizer, tmp_path):
    data = write_unpaired(tmp_path / "u.jsonl", rows=6)
    examples, _ = _build(data, tokenizer, tmp_path / "cache", loss="kto")
    encoder = ChatEncoder(tokenizer, 96, 48)
    records = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    for index, record in enumerate(records):
        partner = records[(index + 1) % len(records)]
        prompt, (completion, kl) = encoder.encode(record["prompt"], [record["completion"], partner["completion"]])
        assert examples[index].prompt == prompt and examples[index].completions == [completion]
        assert examples[index].kl_completion == kl and examples[index].label is record["label"]
    pairs = write_pairs(tmp_path / "p.jsonl", rows=3, candidates=1)
    split, _ = _build(pairs, tokenizer, tmp_path / "cache", loss="kto")
    assert len(split) == 6 and split.labels == [True, False] * 3
    # a pair's chosen is never scored against its own rejected: the KL completion comes from the next record
    second = json.loads(pairs.read_text(encoding="utf-8").splitlines()[1])
    assert split[0].kl_completion == ChatEncoder(tokenizer, 96, 48).encode(split_prompt(pairs, 0),
                                                                          [second["chosen"]])[1][0]


def split_prompt(path: Path, line: int):
    return json.loads(path.read_text(encoding="utf-8").splitlines()[line])["prompt"]


def test_uncommitted_bytes_and_a_torn_cache_are_never_trusted(tokenizer, tmp_path):
    data = write_pairs(tmp_path / "d.jsonl", rows=16, candidates=3)
    cache = tmp_path / "cache"
    examples, _ = _build(data, tokenizer, cache, needed=range(4))
    directory = examples.store.directory
    # what an append killed before its commit leaves: bytes past the commit in every file
    for name in ("tokens.i32", "lengths.i32", "rows.i64"):
        with (directory / name).open("ab") as handle:
            handle.write(os.urandom(64 * 3))
    reopened, _ = _build(data, tokenizer, cache, needed=range(4))
    assert reopened.tokenized_now == 0 and sum(reopened.store.has(i) for i in range(16)) == 4
    grown, _ = _build(data, tokenizer, cache, needed=range(8))  # the next writer cuts the tail, then appends
    assert grown.tokenized_now == 4
    assert _as_lists(grown, range(8)) == _as_lists(_build(data, tokenizer, None)[0], range(8))
    # data files shorter than the commit says (a copy cut short): nothing is trusted, everything is redone
    with (directory / "tokens.i32").open("r+b") as handle:
        handle.truncate(8)
    redone, _ = _build(data, tokenizer, cache, needed=range(8))
    assert redone.tokenized_now == 8
    assert _as_lists(redone, range(8)) == _as_lists(_build(data, tokenizer, None)[0], range(8))


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from transformers import AutoTokenizer
    import prefcli.train.token_cache as token_cache
    from prefcli.losses import get_loss
    from prefcli.train.data import build_examples, load_records
    from prefcli.train.tokenize import ChatEncoder

    model, data, cache = sys.argv[1:4]
    commits = [0]
    real_write_json = token_cache.write_json

    def write_json(path, obj, indent=2):
        commits[0] += 1
        if commits[0] == 2:  # the second chunk's data is on disk, its commit is not: die here
            os.kill(os.getpid(), signal.SIGKILL)
        real_write_json(path, obj, indent)

    token_cache.write_json = write_json
    import prefcli.train.data as data_module
    data_module.CHUNK = 4
    loaded = load_records(data, get_loss("dpo"), "dpo", cache_dir=cache)
    build_examples(loaded, ChatEncoder(AutoTokenizer.from_pretrained(model), 96, 48), cache_dir=cache)
""")


@pytest.mark.slow
def test_a_run_killed_while_writing_the_cache_leaves_nothing_half_trusted(tiny_model, tokenizer, tmp_path):
    data = write_pairs(tmp_path / "d.jsonl", rows=16, candidates=3)
    cache = tmp_path / "cache"
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get(
        "PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(script), str(tiny_model), str(data), str(cache)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    directory = next(cache.glob("tokens-*"))
    assert (directory / "rows.i64").stat().st_size > 4 * 8 * 8  # the killed chunk's rows reached the disk
    examples, _ = _build(data, tokenizer, cache, loss="dpo")
    assert examples.tokenized_now == 12  # only the first committed chunk of 4 was trusted
    assert _as_lists(examples) == _as_lists(_build(data, tokenizer, None, loss="dpo")[0])


def test_chosen_only_losses_take_bare_records_and_others_refuse_them(tokenizer, tmp_path):
    from types import SimpleNamespace

    from prefcli.errors import DataError

    data = tmp_path / "sft.jsonl"
    rows = [{"id": 0, "prompt": "Name a river.", "chosen": "The Nile."},
            {"id": 1, "prompt": "Name a city.", "chosen": "Paris.", "rejected": "A cat.", "candidates": ["A cat."]}]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    sft = SimpleNamespace(chosen_only=True)
    loaded = load_records(data, sft, "sft", cache_dir=tmp_path / "cache")
    encoder = ChatEncoder(tokenizer, 96, 48)
    examples, _ = build_examples(loaded, encoder, cache_dir=tmp_path / "cache")
    for index, row in enumerate(rows):
        prompt = [{"role": "user", "content": row["prompt"]}]
        assert examples[index].completions == encoder.encode(prompt, [row["chosen"], ""])[1]
    assert tokenizer.decode(examples[0].completions[1]) == "<|end|>\n"  # the empty turn: its end of turn alone
    with pytest.raises(DataError, match=r"sft.jsonl:1: rejected: missing: a record needs rejected"):
        load_records(data, get_loss("dpo"), "dpo", cache_dir=tmp_path / "cache")
    with data.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": 2, "prompt": "Hi", "completion": "Hello", "label": True}) + "\n")
    with pytest.raises(DataError, match=r"sft.jsonl:3: chosen: missing: --loss sft trains on chosen completions"):
        load_records(data, sft, "sft", cache_dir=tmp_path / "cache")
