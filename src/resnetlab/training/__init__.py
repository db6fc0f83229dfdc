"""How a run happens: configuration, the loop, optimisers and schedules, checkpoints, reports.

(Named `training` rather than `train` so that `resnetlab.train(config)` can be the function.)
"""

from typing import Any

from .config import TrainConfig
from .settings import load_config

__all__ = ["RunResult", "TrainConfig", "TrainingDiverged", "evaluate", "fit", "load_config"]


def __getattr__(name: str) -> Any:
    """The trainer is imported on first use, so that a helper module (training.device, used by evaluation and
    inference) can be imported without it."""
    if name in ("RunResult", "TrainingDiverged", "fit"):
        from . import loop

        return getattr(loop, name)
    if name == "evaluate":
        from ..evaluation import evaluate

        return evaluate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
