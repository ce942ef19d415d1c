import numpy as np
import pytest

import fastrnn


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Every test starts with grad mode on and leaves the thread count as it found it."""
    threads = fastrnn.get_num_threads()
    assert fastrnn.is_grad_enabled()
    yield
    fastrnn.set_num_threads(threads)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="module")
def torch_single_thread():
    """torch on one thread for a module's tests (used by the torch test files; torch is imported only
    there): its thread pool then does not compete with fastrnn's for the cores."""
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
