"""resnetlab: residual networks on PyTorch.

import resnetlab
model = resnetlab.create_model("resnet56")
result = resnetlab.train("fashion_mnist_fast", epochs=3)
model, meta = resnetlab.load(result.run_dir)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .backbones import backbone, segmentation_model
from .errors import ConfigError, UserError
from .inference import embed, evaluate, load, predict
from .models import create_model, list_models, model_info
from .training import RunResult, TrainConfig, load_config

__version__ = "0.1.0"


def train(config: TrainConfig | dict | str | Path | None = None, **overrides: Any) -> RunResult:
    """Train a model: `config` is a TrainConfig, a nested dict, or a recipe path; keyword overrides win.

    resnetlab.train(model="resnet20", data="fashion-mnist", epochs=5)
    """
    from .training.config import validate
    from .training.loop import fit
    from .training.settings import apply, from_dict

    if isinstance(config, TrainConfig):
        cfg = config
    elif isinstance(config, dict):
        cfg = from_dict(config)
    else:
        cfg = load_config(config)
    for key, value in overrides.items():
        apply(cfg, key, value)
    validate(cfg)
    return fit(cfg)


__all__ = [
    "ConfigError",
    "RunResult",
    "TrainConfig",
    "UserError",
    "backbone",
    "create_model",
    "embed",
    "evaluate",
    "list_models",
    "load",
    "load_config",
    "model_info",
    "predict",
    "segmentation_model",
    "train",
    "__version__",
]
