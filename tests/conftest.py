import os

import pytest
import torch

# Unit tests run on the CPU with two threads, whatever the machine has.
os.environ.setdefault("CAMLIB_DEVICE", "cpu")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(0)
