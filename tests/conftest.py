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
