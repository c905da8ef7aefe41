"""Loads the compiled extension ``panonet._C``, which registers the ``torch.ops.panonet`` ops.

Importing fails loudly, with the reason, when the extension is missing, cannot be loaded, or was
built against another torch: a silently missing op would otherwise surface much later as an
obscure "no such operator" error.
"""

import torch  # first: panonet._C links against torch's shared libraries

_REBUILD = (
    "Build it against the installed torch with `pip install --no-build-isolation -e .` "
    "(or `make build`); see README.md."
)

try:
    from panonet import _C
except ImportError as error:
    raise ImportError(
        f"panonet's compiled extension panonet._C could not be loaded ({error}). {_REBUILD}"
    ) from error

if _C.torch_version != torch.__version__:
    raise ImportError(
        f"panonet._C was built against torch {_C.torch_version} but torch {torch.__version__} "
        f"is installed; the C++ ABI differs between versions. {_REBUILD}"
    )


def built_with_cuda() -> bool:
    """Whether the CUDA kernels of the ops were compiled into this build."""
    return bool(_C.cuda_built)


def cuda_arch_list() -> str:
    """The TORCH_CUDA_ARCH_LIST the CUDA kernels were compiled for ("" without CUDA)."""
    return str(_C.cuda_arch_list)
