"""The words a run's optimizer and training are said in (its clipping's: training.methods)."""

from __future__ import annotations

from typing import Any, Mapping

from mnist_clip.config import OPTIMIZER_KEYS, Config


def optimizer_label(config: dict) -> str:
    """'sgd', 'sgd momentum 0.9 nesterov', 'adam beta1 0.5': the optimizer and the options
    it reads that differ from Keras's defaults (runs written before optimizers were sgd)."""
    optimizer = config.get("optimizer", "sgd")
    parts = [optimizer]
    for key in OPTIMIZER_KEYS.get(optimizer, ()):
        value = config.get(key, getattr(Config, key))
        if value != getattr(Config, key):
            parts.append(key if value is True else f"{key} {value:g}")
    return " ".join(parts)


def training_label(config: Mapping[str, Any]) -> str:
    """'lr 0.01' for the reference's SGD; 'adam beta1 0.5, lr 0.0002, crossentropy' otherwise."""
    parts = [] if optimizer_label(config) == "sgd" else [optimizer_label(config)]
    parts.append(f"lr {config.get('lr', 0):g}")
    if config.get("loss", "mse") != "mse":
        parts.append(config["loss"])
    return ", ".join(parts)
