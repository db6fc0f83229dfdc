import pytest
import torch


@pytest.fixture
def train_steps(monkeypatch) -> list:
    """Every TrainStep (training/step.py) that the test makes, kept for inspection after the run."""
    from resnetlab.training.step import TrainStep

    made: list = []
    real_init = TrainStep.__init__

    def keep(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(TrainStep, "__init__", keep)
    return made


@pytest.fixture(autouse=True)
def _seed_and_threads():
    # Deterministic tests; two threads match this machine and keep CI timings steady.
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield
