"""Model-running tests use PyTorch's native CPU convolutions (see native_cpu_convolutions)."""

import pytest

from tests.models.helpers import native_cpu_convolutions  # noqa: F401  (fixture)


@pytest.fixture(scope="module", autouse=True)
def _native_convolutions(native_cpu_convolutions):  # noqa: F811
    yield
