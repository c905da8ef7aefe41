# Resolves PANONET_CUDA (AUTO | ON | OFF) into PANONET_WITH_CUDA and, when on, enables the CUDA
# language for the toolkit that matches torch and defines panonet::torch_cuda.
#
# Facts this file works around (see BUILD-NOTES): /usr/local/bin/nvcc may be a wrapper script,
# so the compiler is taken from the toolkit directory; the toolkit may lack the headers of the
# CUDA math libraries that ATen/cuda/CUDAContext.h includes (cusparse.h, cublas_v2.h), which pip's
# nvidia-* wheels next to torch provide; torch ignores CMAKE_CUDA_ARCHITECTURES and uses
# TORCH_CUDA_ARCH_LIST, which we honour the same way.

set(_panonet_cuda_mode "${PANONET_CUDA}")
string(TOUPPER "${_panonet_cuda_mode}" _panonet_cuda_mode)
if(NOT _panonet_cuda_mode MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "panonet: PANONET_CUDA must be AUTO, ON or OFF, got '${PANONET_CUDA}'")
endif()

set(PANONET_WITH_CUDA OFF)
set(_panonet_cuda_why "PANONET_CUDA=OFF")
if(NOT _panonet_cuda_mode STREQUAL "OFF")
  if(PANONET_TORCH_CUDA STREQUAL "")
    set(_panonet_cuda_why "torch ${PANONET_TORCH_VERSION} is a CPU build")
  else()
    if(NOT CMAKE_CUDA_COMPILER)
      foreach(_root "$ENV{CUDA_HOME}" "$ENV{CUDA_PATH}" "$ENV{CUDAToolkit_ROOT}" "/usr/local/cuda")
        if(_root AND EXISTS "${_root}/bin/nvcc")
          set(CMAKE_CUDA_COMPILER "${_root}/bin/nvcc")
          set(CUDAToolkit_ROOT "${_root}")
          break()
        endif()
      endforeach()
    endif()
    include(CheckLanguage)
    check_language(CUDA)
    if(CMAKE_CUDA_COMPILER)
      set(PANONET_WITH_CUDA ON)
    else()
      set(_panonet_cuda_why "no CUDA compiler (nvcc) found; set CUDA_HOME")
    endif()
  endif()
endif()

if(_panonet_cuda_mode STREQUAL "ON" AND NOT PANONET_WITH_CUDA)
  message(FATAL_ERROR "panonet: PANONET_CUDA=ON but CUDA cannot be built: ${_panonet_cuda_why}")
endif()

if(PANONET_WITH_CUDA)
  # TORCH_CUDA_ARCH_LIST ("8.0;9.0+PTX", spaces allowed) -> CMAKE_CUDA_ARCHITECTURES.
  set(_arch_list "$ENV{TORCH_CUDA_ARCH_LIST}")
  if(_arch_list STREQUAL "")
    set(_arch_list "8.0;9.0+PTX")  # A100-class SASS, H100-class SASS + PTX for newer GPUs
  endif()
  string(REPLACE " " ";" _arch_list "${_arch_list}")
  set(PANONET_CUDA_ARCH_LIST "${_arch_list}")
  set(CMAKE_CUDA_ARCHITECTURES "")
  foreach(_arch IN LISTS _arch_list)
    if(_arch STREQUAL "")
      continue()
    endif()
    if(NOT _arch MATCHES "^([0-9]+)\\.([0-9]+[af]?)(\\+PTX)?$")
      message(FATAL_ERROR "panonet: cannot read '${_arch}' in TORCH_CUDA_ARCH_LIST (want e.g. 9.0 or 9.0+PTX)")
    endif()
    if(CMAKE_MATCH_3)
      list(APPEND CMAKE_CUDA_ARCHITECTURES "${CMAKE_MATCH_1}${CMAKE_MATCH_2}")
    else()
      list(APPEND CMAKE_CUDA_ARCHITECTURES "${CMAKE_MATCH_1}${CMAKE_MATCH_2}-real")
    endif()
  endforeach()

  set(CMAKE_CUDA_STANDARD 20)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)

  find_library(PANONET_LIB_TORCH_CUDA torch_cuda PATHS "${PANONET_TORCH_LIB_DIR}" NO_DEFAULT_PATH REQUIRED)
  find_library(PANONET_LIB_C10_CUDA c10_cuda PATHS "${PANONET_TORCH_LIB_DIR}" NO_DEFAULT_PATH REQUIRED)
  add_library(panonet::torch_cuda INTERFACE IMPORTED)
  target_link_libraries(panonet::torch_cuda INTERFACE
    "${PANONET_LIB_TORCH_CUDA}" "${PANONET_LIB_C10_CUDA}" CUDA::cudart)
  # Headers of cuBLAS / cuSPARSE / ... from the nvidia-* wheels that came with torch, if any.
  file(GLOB _panonet_nv_includes "${PANONET_SITE_PACKAGES}/nvidia/cu*/include"
                                 "${PANONET_SITE_PACKAGES}/nvidia/*/include")
  if(_panonet_nv_includes)
    target_include_directories(panonet::torch_cuda SYSTEM INTERFACE ${_panonet_nv_includes})
  endif()
  set(PANONET_CUDA_SUMMARY "ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, torch CUDA ${PANONET_TORCH_CUDA}, archs ${CMAKE_CUDA_ARCHITECTURES})")
else()
  set(PANONET_CUDA_SUMMARY "OFF (${_panonet_cuda_why})")
endif()
