"""``prefcli eval harness``: the numbers are lm-eval's own (compared with calling ``lm_eval.simple_evaluate``
directly), the leaderboard-v1 preset names the right tasks, shots and metrics, and bad input is one line + exit 2.
Everything runs offline on the tiny model and the local tasks in examples/harness_tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_main

from prefcli.errors import ConfigError
from prefcli.eval.harness import fewshot_groups, plan_tasks, task_manager
from prefcli.eval.suites import SuiteTask, list_suites, load_suite

TASKS_DIR = Path(__file__).parents[1] / "examples" / "harness_tasks"
TINY_SUITE = TASKS_DIR / "tiny-suite.yaml"




def direct_simple_evaluate(lm, task: str, shots: int, monkeypatch, **kwargs) -> dict:
    """lm-eval called by hand, from the task directory so its relative data_files resolve (indexing only the
    local tasks, as lm-eval's TaskManager allows, to keep the test fast)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    monkeypatch.chdir(TASKS_DIR)
    output = lm_eval.simple_evaluate(model=lm, tasks=[task], num_fewshot=shots, log_samples=False,
                                     task_manager=TaskManager(include_path=str(TASKS_DIR), include_defaults=False),
                                     **kwargs)
    return output


def test_leaderboard_v1_preset_table():
    suite = load_suite("leaderboard-v1")
    assert "leaderboard-v1" in list_suites()
    assert list(suite.tasks) == [
        SuiteTask("arc_challenge", 25, "acc_norm,none"),
        SuiteTask("hellaswag", 10, "acc_norm,none"),
        SuiteTask("truthfulqa_mc2", 0, "acc,none"),
        SuiteTask("mmlu", 5, "acc,none"),
        SuiteTask("winogrande", 5, "acc,none"),
        SuiteTask("gsm8k", 5, "exact_match,strict-match"),
    ]
    groups = fewshot_groups(suite.tasks)
    assert [(shots, [t.task for t in members]) for shots, members in groups] == [
        (25, ["arc_challenge"]), (10, ["hellaswag"]), (0, ["truthfulqa_mc2"]),
        (5, ["mmlu", "winogrande", "gsm8k"])]


def test_preset_metrics_exist_in_lm_eval_task_configs():
    """Each preset metric is one the installed lm-eval task produces (read from its YAML index: no hub)."""
    from lm_eval.tasks._index import Kind

    index = task_manager().task_index
    for task in load_suite("leaderboard-v1").tasks:
        entry = index[task.task]
        metric, filter_name = task.metric.split(",")
        if entry.kind is Kind.GROUP:
            assert metric in [item["metric"] for item in entry.cfg["aggregate_metric_list"]]
            continue
        assert metric in [item["metric"] for item in entry.cfg["metric_list"]], task
        filters = [item["name"] for item in entry.cfg.get("filter_list", [])] or ["none"]
        assert filter_name in filters, task


def test_plan_tasks_combines_suite_extras_and_overrides():
    planned = plan_tasks(["gsm8k", "prefcli_tiny_mc:3", "arc_easy"], "leaderboard-v1")
    assert [t.task for t in planned] == ["arc_challenge", "hellaswag", "truthfulqa_mc2", "mmlu", "winogrande",
                                         "gsm8k", "prefcli_tiny_mc", "arc_easy"]
    assert planned[5] == SuiteTask("gsm8k", 5, "exact_match,strict-match")  # the suite's entry wins
    assert planned[6] == SuiteTask("prefcli_tiny_mc", 3, None)
    assert plan_tasks(["gsm8k"]) == [SuiteTask("gsm8k", None, "exact_match,strict-match")]  # preset metric
    assert {t.num_fewshot for t in plan_tasks(None, "leaderboard-v1", num_fewshot=1)} == {1}
    with pytest.raises(ConfigError, match="did you mean 'leaderboard-v1'"):
        plan_tasks(None, "leaderbord-v1")
    with pytest.raises(ConfigError, match="--tasks and/or --suite"):
        plan_tasks(None, None)
    with pytest.raises(ConfigError, match="few-shot count"):
        plan_tasks(["gsm8k:five"])


def test_suite_numbers_equal_direct_simple_evaluate(tiny_model, tmp_path, monkeypatch):
    """Two tasks with different shots (two simple_evaluate calls merged) vs lm-eval called directly."""
    from lm_eval.models.huggingface import HFLM

    out = tmp_path / "harness"
    assert run_main(["eval", "harness", "--model", str(tiny_model), "--suite", str(TINY_SUITE),
                    "--include-path", str(TASKS_DIR), "--output", str(out), "--seed", "3",
                    "--batch-size", "4", "--device", "cpu"]) == 0
    saved = json.loads((out / "harness.json").read_text())
    assert set(saved) == {"model", "headline", "results", "config", "versions", "prefcli_version"}
    assert saved["model"] == str(tiny_model) and saved["versions"]["lm_eval"]

    lm = HFLM(pretrained=str(tiny_model), batch_size=4, device="cpu")
    seeds = {"random_seed": 3, "numpy_random_seed": 3, "torch_random_seed": 3, "fewshot_random_seed": 3}
    for task, shots, metric in [("prefcli_tiny_mc", 3, "acc_norm,none"),
                                ("prefcli_tiny_arith", 2, "exact_match,strict-match")]:
        direct = direct_simple_evaluate(lm, task, shots, monkeypatch, **seeds)
        expected = {k: v for k, v in direct["results"][task].items() if "," in k}
        ours = {k: v for k, v in saved["results"]["results"][task].items() if "," in k}
        assert ours == expected
        assert saved["results"]["n-shot"][task] == shots
        stderr_key = metric.replace(",", "_stderr,")
        assert saved["headline"][task] == {"metric": metric, "value": expected[metric],
                                           "stderr": expected[stderr_key], "num_fewshot": shots}
    assert 0 < saved["headline"]["prefcli_tiny_mc"]["value"] < 1  # a real score, not a degenerate 0 or 1
    assert saved["results"]["n-samples"]["prefcli_tiny_mc"]["effective"] == 20


def test_lora_adapter_with_chat_template_equals_direct(tiny_model, tmp_path, monkeypatch):
    import torch
    from lm_eval.models.huggingface import HFLM
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    adapter = tmp_path / "adapter"
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)) \
        .save_pretrained(adapter)

    out = tmp_path / "harness"
    assert run_main(["eval", "harness", "--model", str(adapter), "--tasks", "prefcli_tiny_mc:1",
                    "--include-path", str(TASKS_DIR), "--apply-chat-template", "--limit", "8",
                    "--output", str(out), "--device", "cpu", "--log-samples"]) == 0
    saved = json.loads((out / "harness.json").read_text())
    assert saved["config"]["peft"] == str(adapter) and saved["config"]["pretrained"] == str(tiny_model)
    samples = (out / "samples" / "prefcli_tiny_mc.jsonl").read_text().splitlines()
    assert len(samples) == 8 and "<|user|>" in json.loads(samples[0])["arguments"][0][0]

    lm = HFLM(pretrained=str(tiny_model), peft=str(adapter), batch_size=8, device="cpu")
    direct = direct_simple_evaluate(lm, "prefcli_tiny_mc", 1, monkeypatch, limit=8, apply_chat_template=True)
    assert saved["results"]["results"]["prefcli_tiny_mc"]["acc,none"] == \
        direct["results"]["prefcli_tiny_mc"]["acc,none"]
    assert saved["headline"]["prefcli_tiny_mc"]["value"] == direct["results"]["prefcli_tiny_mc"]["acc,none"]


def test_bad_inputs_exit_2_with_one_line(tiny_model, tmp_path, capsys):
    def fails(args: list[str], *needles: str) -> None:
        assert run_main(["eval", "harness", *args, "--output", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert "error:" in err and len(err.strip().splitlines()) <= 3, err  # one (soft-wrapped) line
        for needle in needles:
            assert needle in " ".join(err.split()), err

    fails(["--model", str(tiny_model), "--suite", "leaderbord"], "unknown suite", "leaderboard-v1")
    fails(["--model", str(tmp_path), "--tasks", "prefcli_tiny_mc"], "not a model directory")
    fails(["--model", str(tmp_path / "nope"), "--tasks", "prefcli_tiny_mc"], "model directory not found")
    fails(["--model", str(tiny_model), "--tasks", "arc_challenj"], "unknown lm-eval task",
          "did you mean 'arc_challenge'")
    broken = tmp_path / "broken_tasks"
    broken.mkdir()
    local_yaml = (TASKS_DIR / "prefcli_tiny_mc.yaml").read_text()
    (broken / "missing_files.yaml").write_text(local_yaml.replace("task: prefcli_tiny_mc", "task: missing_files"))
    fails(["--model", str(tiny_model), "--tasks", "missing_files", "--include-path", str(broken)],
          "task 'missing_files': cannot load dataset 'json'")
    # A hub dataset that is not in the local cache, with HF_DATASETS_OFFLINE=1 (set in conftest).
    hub_yaml = local_yaml.replace("task: prefcli_tiny_mc", "task: hub_only").replace(
        "dataset_path: json", "dataset_path: prefcli-tests/never-downloaded")
    (broken / "hub_only.yaml").write_text(hub_yaml)
    fails(["--model", str(tiny_model), "--tasks", "hub_only", "--include-path", str(broken)],
          "task 'hub_only': cannot load dataset 'prefcli-tests/never-downloaded'", "offline")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_lm_eval_private_apis():
    """The smoke test of prefcli.eval.lm_eval_private: every private lm-eval name prefcli uses still exists and
    still means the same. If this fails after an lm-eval upgrade, fix the adapter module, nowhere else."""
    from prefcli.eval import lm_eval_private
    from prefcli.eval.harness import build_task_manager, load_task

    assert lm_eval_private.check_private_apis() == []
    include = (str(TASKS_DIR.resolve()),)
    manager = build_task_manager(include, ["prefcli_tiny_arith", "prefcli_tiny_mc"])
    arith = manager.task_index["prefcli_tiny_arith"]
    assert lm_eval_private.is_plain_task(arith) and lm_eval_private.is_yaml_task(arith)
    assert lm_eval_private.entry_yaml_path(arith) == TASKS_DIR.resolve() / "prefcli_tiny_arith.yaml"
    assert lm_eval_private.entry_config(arith)["dataset_kwargs"]["data_files"]["test"] == "data/tiny_arith_test.jsonl"
    loaded = lm_eval_private.load_task_yaml(TASKS_DIR / "prefcli_tiny_arith.yaml")
    assert loaded["task"] == "prefcli_tiny_arith" and loaded["generation_kwargs"]["max_gen_toks"] == 8
    [arith_task] = load_task(manager, "prefcli_tiny_arith", include)
    assert lm_eval_private.task_filter_names(arith_task) == {"strict-match", "flexible-extract"}
    assert lm_eval_private.task_metric_names(arith_task) == {"exact_match"}
    [mc_task] = load_task(manager, "prefcli_tiny_mc", include)
    assert lm_eval_private.task_metric_names(mc_task) == {"acc", "acc_norm"}
    assert lm_eval_private.task_filter_names(mc_task) == {"none"}
