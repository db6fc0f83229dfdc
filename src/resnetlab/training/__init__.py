"""How a run happens: configuration, the loop, optimisers and schedules, checkpoints, reports.

(Named `training` rather than `train` so that `resnetlab.train(config)` can be the function.)
"""

from .config import TrainConfig, load_config
from .loop import RunResult, TrainingDiverged, evaluate, fit

__all__ = ["RunResult", "TrainConfig", "TrainingDiverged", "evaluate", "fit", "load_config"]
