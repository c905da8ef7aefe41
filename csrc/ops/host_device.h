// PANONET_HD marks the math shared by the CPU and CUDA kernels: __host__ __device__ under nvcc,
// nothing for the host compiler.
#pragma once

#if defined(__CUDACC__)
#define PANONET_HD __host__ __device__
#else
#define PANONET_HD
#endif
