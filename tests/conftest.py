import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    # Deterministic tests; two threads match this machine and keep CI timings steady.
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield
