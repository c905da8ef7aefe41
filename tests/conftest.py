"""Shared test configuration: hypothesis profiles and the devices the ops are tested on."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# "ci": derandomized (the same examples on every run, so a red CI is reproducible);
# "dev": random exploration. Choose with HYPOTHESIS_PROFILE.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "dev",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


_needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def requires_cuda(test):
    """Skipped without a GPU, and marked ``cuda``: ``pytest -k cuda`` (``make gpu-check``)
    selects it whatever its name."""
    return pytest.mark.cuda(_needs_gpu(test))
