import os

import pytest
import torch

# Tests compare numbers; keep them repeatable and within the 2-core budget.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
