"""Fixtures shared by the test files."""

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test (small models are faster and bitwise repeatable), restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
