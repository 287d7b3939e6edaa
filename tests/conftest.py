"""Shared fixtures: tiny offline models built once per test run."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Path of a random Llama model (hidden 64, 2 layers) with a BPE tokenizer that adds BOS."""
    from prefcli.fixtures import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_model_no_bos(tmp_path_factory):
    """Same architecture, but the tokenizer adds no BOS token."""
    from prefcli.fixtures import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model-no-bos"), add_bos=False)
