// The mean-shift core compiled for AVX2 + FMA (8 float32 / 4 float64 lanes); chosen at run time
// by mean_shift_dispatch.cpp on CPUs that have both.
#define PANONET_MS_ISA avx2
#include "mean_shift_core.cpp"
