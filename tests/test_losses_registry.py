"""The registry, capability flags, hyper-parameter validation, input checks and the ``prefcli losses`` command."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from prefcli.losses import (
    LossOutput,
    PreferenceLoss,
    get_loss,
    list_losses,
    loss_defaults,
    loss_hparam_names,
    loss_hparam_specs,
)

ALL_NAMES = ["dpo", "ipo", "hinge", "robust", "exo", "nca", "bco", "sppo", "apo-zero", "apo-down", "discopop",
             "sigmoid-norm", "simpo", "cpo", "rpo", "kto", "aot", "aot-unpaired", "rnce", "infonca", "mcpo", "sft"]


def test_list_losses_describes_every_loss():
    entries = {entry.name: entry for entry in list_losses()}
    assert sorted(entries) == sorted(ALL_NAMES)
    for entry in entries.values():
        assert "arXiv:" in entry.paper
        assert entry.data_kind in ("pair", "unpaired", "candidates", "chosen")
        assert entry.hparams == loss_defaults(entry.name)
        assert "beta" in entry.hparams or entry.name == "sft"  # sft is plain likelihood: no implicit reward
    assert {name for name, e in entries.items() if e.reference_free} == {"simpo", "cpo", "sft"}
    assert {name for name, e in entries.items() if e.data_kind == "unpaired"} == {"kto", "aot-unpaired"}
    assert {name for name, e in entries.items() if e.data_kind == "candidates"} == {"rnce", "infonca", "mcpo"}


def test_defaults_follow_trl_and_the_papers():
    assert loss_defaults("dpo") == {"beta": 0.1, "label_smoothing": 0.0}
    assert loss_defaults("simpo") == {"beta": 2.0, "gamma": 0.5, "label_smoothing": 0.0, "alpha": 0.0}
    assert loss_defaults("cpo") == {"beta": 0.1, "label_smoothing": 0.0, "alpha": 1.0, "nll_average": "tokens"}
    assert loss_defaults("discopop")["tau"] == 0.05
    assert loss_defaults("exo")["label_smoothing"] == 1e-3
    assert loss_defaults("mcpo") == {"beta": 0.1, "negatives": 1, "sampler": "mcmc"}
    assert loss_defaults("aot") == {"beta": 0.1, "label_smoothing": 0.0, "objective": "logistic", "sort": "hard",
                                    "temperature": 0.1, "global_sort": False}
    assert loss_hparam_names("rnce") == ("beta", "negatives")
    assert {spec.name: spec.choices for spec in loss_hparam_specs("mcpo")}["sampler"] == ("mcmc", "max", "min",
                                                                                          "random")


def test_capability_flags():
    flags = {name: get_loss(name) for name in ALL_NAMES}
    assert all(isinstance(loss, PreferenceLoss) and isinstance(loss, torch.nn.Module) for loss in flags.values())
    assert {n for n, loss in flags.items() if loss.batch_coupled} == {"aot", "aot-unpaired"}
    assert {n for n, loss in flags.items() if loss.needs_candidates} == {"rnce", "infonca", "mcpo"}
    assert {n for n, loss in flags.items() if loss.unpaired} == {"kto", "aot-unpaired"}
    assert {n for n, loss in flags.items() if loss.needs_kl_pairs} == {"kto"}
    assert {n for n, loss in flags.items() if loss.uses_lengths} == {"ipo", "sigmoid-norm", "simpo", "cpo", "rpo",
                                                                     "sft"}
    assert {n for n, loss in flags.items() if loss.chosen_only} == {"sft"}
    assert get_loss("mcpo", negatives=4).negatives == 4 and get_loss("dpo").negatives == 1
    assert get_loss("mcpo").draw_needs_policy and not get_loss("mcpo", sampler="random").draw_needs_policy
    assert not get_loss("rnce").draw_needs_policy and not get_loss("infonca").draw_needs_policy
    loss = get_loss("aot", beta=0.05, objective="ls")
    assert loss.hparams["beta"] == 0.05 and loss.hparams["objective"] == "ls" and loss.name == "aot"


def test_unknown_loss_name_suggests_the_close_one_and_lists_all():
    with pytest.raises(ValueError) as error:
        get_loss("mcp0")
    message = str(error.value)
    assert "did you mean 'mcpo'?" in message
    assert all(name in message for name in ALL_NAMES)
    assert get_loss("apo_zero").name == "apo-zero"  # TRL-style underscores are accepted


@pytest.mark.parametrize("name,hparams,match", [
    ("dpo", {"bta": 0.1}, "has no hyper-parameter 'bta'; did you mean 'beta'\\? valid: beta, label_smoothing"),
    ("dpo", {"tau": 0.1}, "loss 'dpo' has no hyper-parameter 'tau'"),
    ("dpo", {"beta": 0.0}, "'beta' must be > 0, got 0.0"),
    ("ipo", {"beta": -1}, "'beta' must be > 0"),
    ("dpo", {"label_smoothing": 0.5}, r"'label_smoothing' must be in \[0, 0.5\)"),
    ("robust", {"label_smoothing": -0.1}, r"'label_smoothing' must be in \[0, 0.5\)"),
    ("exo", {"label_smoothing": 0.0}, r"must be in \(0, 0.5\)"),
    ("discopop", {"tau": 2.0}, r"'tau' must be in \(0, 1\]"),
    ("simpo", {"gamma": -0.5}, "'gamma' must be >= 0"),
    ("cpo", {"alpha": -1.0}, "'alpha' must be >= 0"),
    ("mcpo", {"negatives": 0}, "'negatives' must be an integer >= 1|'negatives' must be >= 1"),
    ("mcpo", {"negatives": 1.5}, "'negatives' must be an integer"),
    ("mcpo", {"sampler": "greedy"}, "'sampler' must be one of 'mcmc', 'max', 'min', 'random'"),
    ("aot", {"sort": "fast"}, "'sort' must be one of 'hard', 'soft'"),
    ("aot", {"global_sort": "yes"}, "'global_sort' must be true or false"),
    ("dpo", {"beta": "0.1"}, "'beta' must be a number"),
    ("dpo", {"beta": float("nan")}, "'beta' must be finite"),
])
def test_bad_hparams_raise_value_error_naming_the_valid_ones(name, hparams, match):
    with pytest.raises(ValueError, match=match):
        get_loss(name, **hparams)


def test_none_keeps_the_default():
    loss = get_loss("dpo", beta=None, label_smoothing=None, tau=None)
    assert loss.hparams == {"beta": 0.1, "label_smoothing": 0.0}


def test_input_errors_name_the_problem():
    chosen, rejected = torch.randn(4), torch.randn(4)
    with pytest.raises(ValueError, match="needs reference_chosen_logps and reference_rejected_logps"):
        get_loss("dpo")(chosen, rejected)
    with pytest.raises(ValueError, match=r"policy_rejected_logps has shape \[3\], expected \[4\]"):
        get_loss("dpo")(chosen, rejected[:3], chosen, rejected[:3])
    with pytest.raises(ValueError, match=r"reference_chosen_logps has shape \[2\], expected \[4\]"):
        get_loss("dpo")(chosen, rejected, chosen[:2], rejected)
    with pytest.raises(ValueError, match=r"policy_rejected_logps has shape \[4, 2\], expected \[4\]"):
        get_loss("dpo")(chosen, torch.randn(4, 2), chosen, torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"policy_chosen_logps must have shape \[B\]"):
        get_loss("dpo")(chosen[None], rejected[None], chosen[None], rejected[None])
    with pytest.raises(ValueError, match="needs rejected_lengths"):
        get_loss("ipo")(chosen, rejected, chosen, rejected, chosen_lengths=torch.ones(4))
    with pytest.raises(ValueError, match="needs chosen_lengths"):
        get_loss("cpo")(chosen, rejected)
    with pytest.raises(ValueError, match=r"chosen_lengths has shape \[3\], expected \[4\]"):
        get_loss("simpo")(chosen, rejected, chosen_lengths=torch.ones(3), rejected_lengths=torch.ones(4))
    with pytest.raises(ValueError, match="unexpected input\\(s\\) policy_kl_logps; extra inputs it accepts: none"):
        get_loss("dpo")(chosen, rejected, chosen, rejected, policy_kl_logps=chosen)
    with pytest.raises(ValueError, match="did you mean 'policy_kl_logps'"):
        get_loss("kto")(chosen, rejected, chosen, rejected, policy_kl_logp=chosen)
    with pytest.raises(ValueError, match="needs both policy_kl_logps and reference_kl_logps"):
        get_loss("kto")(chosen, rejected, chosen, rejected, policy_kl_logps=chosen)
    with pytest.raises(ValueError, match="must be a floating-point tensor"):
        get_loss("dpo")(torch.ones(4, dtype=torch.long), rejected, chosen, rejected)


def test_reference_free_losses_need_no_reference_and_ignore_one():
    chosen, rejected, lengths = torch.randn(4) - 5, torch.randn(4) - 5, torch.full((4,), 3.0)
    for name in ("simpo", "cpo"):
        without = get_loss(name)(chosen, rejected, chosen_lengths=lengths, rejected_lengths=lengths)
        with_reference = get_loss(name)(chosen, rejected, torch.zeros(4), torch.zeros(4), chosen_lengths=lengths,
                                        rejected_lengths=lengths)
        assert isinstance(without, LossOutput)
        torch.testing.assert_close(without.losses, with_reference.losses)


def test_loss_modules_describe_themselves():
    loss = get_loss("mcpo", beta=0.2, negatives=3)
    assert "beta=0.2" in repr(loss) and "negatives=3" in repr(loss) and "sampler='mcmc'" in repr(loss)
    for name in ALL_NAMES:
        cls = type(get_loss(name))
        assert cls.__doc__ and "arXiv" in cls.__doc__ and "loss" in cls.__doc__.lower(), name


def test_cli_lists_every_loss():
    from prefcli.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["losses"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for name in ALL_NAMES:
        assert name in result.output
    assert "arXiv:2502.04567" in result.output and "reference-free" in result.output

    result = runner.invoke(app, ["losses", "--json"])
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    assert [entry["name"] for entry in entries] == [entry.name for entry in list_losses()]
    assert {entry["name"]: entry["hparams"] for entry in entries}["simpo"]["gamma"] == 0.5


def test_cli_shows_one_loss_and_rejects_unknown_names(capsys):
    from prefcli.cli import app, main

    runner = CliRunner()
    result = runner.invoke(app, ["losses", "mcpo"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "softmax_c(beta * (log pi_theta(y_c|x) - log pi_ref(y_c|x)))" in result.output
    assert "one of 'mcmc', 'max', 'min', 'random'" in result.output
    result = runner.invoke(app, ["losses", "apo_zero", "--json"])
    assert [entry["name"] for entry in json.loads(result.output)] == ["apo-zero"]

    with pytest.raises(SystemExit) as exit_info:
        main(["losses", "mcp"])
    assert exit_info.value.code == 2
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert len(error_lines) == 1 and "unknown loss 'mcp'; did you mean 'mcpo'?" in error_lines[0]


def test_a_loss_registers_with_one_decorator():
    """Adding a loss is one module: the decorator makes it known to get_loss, list_losses and the CLI."""
    from prefcli.losses import REGISTRY, register_loss
    from prefcli.losses.base import beta_param

    @register_loss
    class ToyLoss(PreferenceLoss):
        """Toy loss for the registry test (arXiv:0000.00000)."""

        name = "toy-registry-test"
        hparam_specs = (beta_param(0.3),)

        def compute(self, batch):
            margin = self.beta * (batch.chosen_logratios - batch.rejected_logratios)
            return -torch.nn.functional.logsigmoid(margin), margin, margin, {}

    try:
        assert get_loss("toy-registry-test").beta == 0.3
        assert "toy-registry-test" in [entry.name for entry in list_losses()]
        with pytest.raises(ValueError, match="registered twice"):
            register_loss(type("OtherToy", (PreferenceLoss,), {"name": "toy-registry-test"}))
    finally:
        REGISTRY.pop("toy-registry-test")


def test_every_loss_module_registers_its_losses():
    import importlib
    import pkgutil

    import prefcli.losses as package
    from prefcli.losses import REGISTRY

    registered_modules = {cls.__module__ for cls in REGISTRY.values()}
    loss_modules = set()
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"prefcli.losses.{info.name}")
        if any(isinstance(value, type) and issubclass(value, PreferenceLoss) and value.name
               and value.__module__ == module.__name__ for value in vars(module).values()):
            loss_modules.add(module.__name__)
    assert loss_modules == registered_modules
    assert sorted(REGISTRY) == sorted(ALL_NAMES)
