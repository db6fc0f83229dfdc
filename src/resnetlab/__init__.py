"""resnetlab: residual networks on PyTorch.

import resnetlab
model = resnetlab.create_model("resnet56")
result = resnetlab.train("fashion_mnist_fast", epochs=3)
model, meta = resnetlab.load(result.run_dir)
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, UserError

if TYPE_CHECKING:
    from .backbones import backbone, segmentation_model
    from .inference import embed, evaluate, load, predict
    from .models import create_model, list_models, model_info
    from .training import RunResult, TrainConfig, load_config

__version__ = "0.1.0"

# The public names, each imported from its module on first use: `import resnetlab` (and the command line's
# start, which a Ctrl-C may interrupt) does not wait for torch until something needs it.
LAZY = {
    "backbone": "backbones",
    "segmentation_model": "backbones",
    "embed": "inference",
    "evaluate": "inference",
    "load": "inference",
    "predict": "inference",
    "create_model": "models",
    "list_models": "models",
    "model_info": "models",
    "RunResult": "training",
    "TrainConfig": "training",
    "load_config": "training",
}


def __getattr__(name: str) -> Any:
    if name in LAZY:
        value = getattr(importlib.import_module(f".{LAZY[name]}", __name__), name)
        globals()[name] = value  # imported once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *LAZY])


def train(config: TrainConfig | dict | str | Path | None = None, **overrides: Any) -> RunResult:
    """Train a model: `config` is a TrainConfig, a nested dict, or a recipe path; keyword overrides win.

    resnetlab.train(model="resnet20", data="fashion-mnist", epochs=5)
    """
    from .training.config import TrainConfig, validate
    from .training.loop import fit
    from .training.settings import apply, from_dict, load_config

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
