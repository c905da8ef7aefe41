"""Training tests run the real PanoNet on tiny inputs: PyTorch's native CPU convolutions (see
tests.models.helpers.native_cpu_convolutions), for every module here."""

import pytest

from tests.models.helpers import native_cpu_convolutions  # noqa: F401  (fixture)


@pytest.fixture(scope="module", autouse=True)
def _native_convolutions(native_cpu_convolutions):  # noqa: F811
    yield
