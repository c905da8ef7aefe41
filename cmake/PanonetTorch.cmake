# Locates the torch that the build's Python imports: version, headers, libraries, and whether it is a
# CUDA build. Torch's own CMake package is not used: with a CUDA build of torch it insists on a
# complete CUDA toolkit even for a CPU-only extension, and it relies on the removed FindCUDA module.
#
# Defines: PANONET_TORCH_VERSION, PANONET_TORCH_CUDA (CUDA version string, empty for a CPU build),
# PANONET_TORCH_LIB_DIR, PANONET_SITE_PACKAGES and the imported targets panonet::torch (CPU
# libraries + headers) and panonet::torch_python.

execute_process(
  COMMAND "${Python_EXECUTABLE}" -c
          "import os, sysconfig, torch; print(torch.__version__); print(torch.version.cuda or ''); print(os.path.dirname(torch.__file__)); print(sysconfig.get_paths()['purelib'])"
  OUTPUT_VARIABLE _panonet_torch_info
  RESULT_VARIABLE _panonet_torch_rc
  ERROR_VARIABLE _panonet_torch_err
  OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _panonet_torch_rc EQUAL 0)
  message(FATAL_ERROR
    "panonet: `${Python_EXECUTABLE} -c 'import torch'` failed. Install torch in this environment "
    "first and build without isolation (pip install --no-build-isolation -e .).\n${_panonet_torch_err}")
endif()
string(REPLACE "\n" ";" _panonet_torch_info "${_panonet_torch_info}")
list(GET _panonet_torch_info 0 PANONET_TORCH_VERSION)
list(GET _panonet_torch_info 1 PANONET_TORCH_CUDA)
list(GET _panonet_torch_info 2 _panonet_torch_dir)
list(GET _panonet_torch_info 3 PANONET_SITE_PACKAGES)
set(PANONET_TORCH_LIB_DIR "${_panonet_torch_dir}/lib")

function(_panonet_torch_library var name)
  find_library(${var} ${name} PATHS "${PANONET_TORCH_LIB_DIR}" NO_DEFAULT_PATH REQUIRED)
endfunction()
_panonet_torch_library(PANONET_LIB_C10 c10)
_panonet_torch_library(PANONET_LIB_TORCH torch)
_panonet_torch_library(PANONET_LIB_TORCH_CPU torch_cpu)
_panonet_torch_library(PANONET_LIB_TORCH_PYTHON torch_python)

add_library(panonet::torch INTERFACE IMPORTED)
target_include_directories(panonet::torch SYSTEM INTERFACE
  "${_panonet_torch_dir}/include"
  "${_panonet_torch_dir}/include/torch/csrc/api/include")
target_link_libraries(panonet::torch INTERFACE
  "${PANONET_LIB_TORCH}" "${PANONET_LIB_TORCH_CPU}" "${PANONET_LIB_C10}")

# torch_python is not part of torch's link interface; the pybind11 shell needs it.
add_library(panonet::torch_python INTERFACE IMPORTED)
target_link_libraries(panonet::torch_python INTERFACE "${PANONET_LIB_TORCH_PYTHON}")
