"""``prefcli train --online`` on the tiny model with the length judge: three segments, each regenerated with the
weights the previous one trained (the reference staying the initial model); SIGKILL after segment 1 and
``--resume`` never regenerates it; bad input exits with code 2 and keeps what was finished."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prefcli.online.candidates import sample_completions, weights_checksum
from prefcli.settings import SamplingSettings

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import invoke_cli
from test_online_generate import _closed_port


def write_prompts(path: Path, count: int = 6) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for index in range(count):
            handle.write(json.dumps({"id": f"p{index}", "prompt": f"Say something about {index}."}) + "\n")
    return path


def online_args(model, prompts, output, *extra) -> list[str]:
    return ["train", "--online", "--segments", "3", "--model", model, "--data", prompts, "--output", output,
            "--judge", "rule:length", "--max-new-tokens", "8", "--temperatures", "1.0",
            "--per-temperature", "2", "--loss", "dpo", "--batch-size", "1", "--max-steps", "3", "--lr", "0.02",
            "--warmup", "0", "--seed", "7", *map(str, extra)]


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_three_segments_regenerate_with_the_updated_policy(tiny_model, tmp_path):
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    output = tmp_path / "run"
    code, text = invoke_cli(online_args(tiny_model, prompts, output))
    assert code == 0, text
    summary = read_json(output / "online.json")
    assert [s["steps"] for s in summary["segments"]] == [1, 1, 1]
    assert summary["generated_now"] == summary["trained_now"] == [1, 2, 3]

    initial = weights_checksum(tiny_model)
    policies = [read_json(output / "segments" / str(k) / "generation.json") for k in (1, 2, 3)]
    assert policies[0]["policy"] == str(tiny_model) and policies[0]["policy_checksum"] == initial
    for k in (2, 3):
        previous = output / "segments" / str(k - 1) / "model"
        assert policies[k - 1]["policy"] == str(previous)
        assert policies[k - 1]["policy_checksum"] == weights_checksum(previous) != initial
        assert read_json(output / "segments" / str(k) / "data.jsonl.meta.json")["config"]["model"] == str(previous)
        # the reference stays the initial policy
        import yaml

        train_config = yaml.safe_load((output / "segments" / str(k) / "model" / "config.yaml").read_text())
        assert train_config["ref_model"] == str(tiny_model) and train_config["model"] == str(previous)
    assert len({p["policy_checksum"] for p in policies}) == 3

    # segment 2's completions are exactly what the segment-1 weights sample, and not what the initial model does
    cached = read_json(output / "segments" / "2" / "completions.json")
    seg2_prompts = [[{"role": "user", "content": f"Say something about {i}."}] for i in (2, 3)]
    settings = SamplingSettings(**{**cached["settings"], "temperatures": tuple(cached["settings"]["temperatures"])})
    from_updated = sample_completions(str(output / "segments" / "1" / "model"), seg2_prompts, settings,
                                      cached["seed"])
    from_initial = sample_completions(tiny_model, seg2_prompts, settings, cached["seed"])
    as_lists = [[[text, temperature] for text, temperature in group] for group in from_updated]
    assert cached["completions"] == as_lists
    assert from_initial != from_updated

    # the final model in OUTPUT is the last segment's; metrics carry generation time and global steps
    final = output / "segments" / "3" / "model" / "model.safetensors"
    assert (output / "model.safetensors").read_bytes() == final.read_bytes()
    lines = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    generation = [line for line in lines if line["event"] == "generation"]
    assert [line["segment"] for line in generation] == [1, 2, 3]
    assert all(line["generation_seconds"] > 0 for line in generation)
    assert [line["step"] for line in lines if line["event"] == "train"] == [1, 2, 3]
    with sqlite3.connect(output / "judgments.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0] == sum(p["judgments"] for p in policies)

    # the same command again is refused: the run is there, --resume continues it
    code, text = invoke_cli(online_args(tiny_model, prompts, output))
    assert code == 2 and "already holds an online run" in text

    # --resume of the finished run publishes the final model again (it used to crash on '.final-tmp'), and so does
    # one killed while publishing: a half-filled .final-tmp linking the same files
    final_bytes = (output / "model.safetensors").read_bytes()
    for killed_while_publishing in (False, True):
        if killed_while_publishing:
            (output / ".final-tmp").mkdir()
            os.link(output / "segments" / "3" / "model" / "config.json", output / ".final-tmp" / "config.json")
        code, text = invoke_cli(online_args(tiny_model, prompts, output, "--resume"))
        assert code == 0, text
        assert read_json(output / "online.json")["trained_now"] == []
        assert not (output / ".final-tmp").exists()
        assert (output / "model.safetensors").read_bytes() == final_bytes
    lines_after = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert lines_after == lines  # rebuilt from the segments, the same lines


@pytest.mark.slow
def test_sigkill_after_segment_one_then_resume(tiny_model, tmp_path):
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    output = tmp_path / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    process = subprocess.Popen([sys.executable, "-m", "prefcli", *online_args(tiny_model, prompts, output)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done_marker = output / "segments" / "1" / "DONE"
    deadline = time.monotonic() + 150
    while not done_marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    assert not (output / "segments" / "3" / "DONE").exists()
    segment_1 = output / "segments" / "1"
    kept = {name: ((segment_1 / name).stat().st_mtime_ns, (segment_1 / name).read_bytes())
            for name in ("data.jsonl", "data.jsonl.meta.json", "generation.json", "completions.json", "DONE")}
    with sqlite3.connect(output / "judgments.sqlite") as db:
        judged_before = db.execute("SELECT key, attempts FROM judgments").fetchall()

    code, text = invoke_cli(online_args(tiny_model, prompts, output, "--resume"))
    assert code == 0, text
    summary = read_json(output / "online.json")
    assert 1 not in summary["generated_now"] and 1 not in summary["trained_now"]
    assert 3 in summary["generated_now"]
    for name, (mtime, content) in kept.items():
        assert (segment_1 / name).stat().st_mtime_ns == mtime and (segment_1 / name).read_bytes() == content, name
    with sqlite3.connect(output / "judgments.sqlite") as db:
        after = dict(db.execute("SELECT key, attempts FROM judgments").fetchall())
    assert all(after[key] == attempts for key, attempts in judged_before)  # nothing judged twice
    assert [s["segment"] for s in summary["segments"]] == [1, 2, 3]
    assert read_json(output / "segments" / "2" / "generation.json")["policy"] == str(segment_1 / "model")


@pytest.mark.parametrize("case", ["missing-prompts", "unreachable-judge", "unknown-yaml-key", "flags-offline"])
def test_online_bad_input_exits_2(tiny_model, tmp_path, case):
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    output = tmp_path / "run"
    args = online_args(tiny_model, prompts, output)
    if case == "missing-prompts":
        args[args.index("--data") + 1] = str(tmp_path / "none.jsonl")
        expected = "none.jsonl: no such file"
    elif case == "unreachable-judge":
        args[args.index("--judge") + 1] = f"http://127.0.0.1:{_closed_port()}/v1"
        config = tmp_path / "online.yaml"
        config.write_text("online:\n  judge_model: judge\n  max_retries: 0\n  timeout: 5\n")
        args += ["--config", str(config)]
        expected = "ranking judgments failed"
    elif case == "unknown-yaml-key":
        config = tmp_path / "online.yaml"
        config.write_text("online:\n  segmnets: 2\n")
        args += ["--config", str(config)]
        expected = "unknown key 'segmnets' (did you mean segments?)"
    else:
        args.remove("--online")
        expected = "--segments, --temperatures, --per-temperature, --max-new-tokens, --judge: only with --online"
    code, text = invoke_cli(args)
    assert code == 2, text
    assert expected in " ".join(text.split()), text
    if case == "unreachable-judge":  # sampled completions are kept for the rerun; nothing was trained
        assert (output / "segments" / "1" / "completions.json").is_file()
        assert not (output / "segments" / "1" / "data.jsonl").exists()
        assert not (output / "segments" / "1" / "DONE").exists()


def test_resume_inside_a_segment_continues_from_its_checkpoint(tiny_model, tmp_path):
    """A segment interrupted after its first checkpoint resumes with train's own resume: bit-exact weights."""
    prompts = write_prompts(tmp_path / "prompts.jsonl", count=4)
    output = tmp_path / "run"
    args = online_args(tiny_model, prompts, output, "--save-every", "1", "--keep-checkpoints", "0")
    args[args.index("--segments") + 1] = "2"
    args[args.index("--max-steps") + 1] = "4"
    args[args.index("--loss") + 1] = "mcpo"
    code, text = invoke_cli(args)
    assert code == 0, text
    segment = output / "segments" / "2"
    finished = (segment / "model" / "model.safetensors").read_bytes()
    # as if killed between the segment's two steps: no DONE, no step-2 checkpoint, one metrics line
    (segment / "DONE").unlink()
    import shutil

    shutil.rmtree(segment / "model" / "checkpoints" / "step-2")
    metrics = segment / "model" / "metrics.jsonl"
    metrics.write_text(metrics.read_text().splitlines()[0] + "\n")
    data_before = (segment / "data.jsonl").stat().st_mtime_ns

    code, text = invoke_cli([*args, "--resume"])
    assert code == 0, text
    assert read_json(segment / "DONE")["resumed_from"] == 1
    assert read_json(output / "online.json")["trained_now"] == [2]
    assert (segment / "data.jsonl").stat().st_mtime_ns == data_before
    assert (segment / "model" / "model.safetensors").read_bytes() == finished
    assert (output / "model.safetensors").read_bytes() == finished
