"""Training: tokenization with chat templates, collation, selective log-probs, precomputed reference log-probs,
the accelerate loop, checkpoints and exact resume.

>>> from prefcli.train import TrainConfig, train
>>> summary = train(TrainConfig(model="./sft", data="pairs.jsonl", output="runs/dpo", loss="dpo", beta=0.1))
"""

from prefcli.train.config import TrainConfig, load_config


def train(config, progress=None, part=None) -> dict:
    """Run one training job (see ``prefcli.train.loop.train``); imported lazily to keep ``import prefcli`` light."""
    from prefcli.train.loop import train as run

    return run(config, progress=progress, part=part)


__all__ = ["TrainConfig", "load_config", "train"]
