// Picks the mean-shift core compiled for the best instruction set this CPU runs.
// PANONET_MS_BASELINE=1 forces the baseline build (used by the tests to cover both).
#include <cstdlib>

#include "mean_shift_core.h"

namespace panonet::ms {

namespace baseline {
Result mean_shift(const double* points, int64_t n, int64_t D, const Params& params);
}
#ifdef PANONET_MS_AVX2
namespace avx2 {
Result mean_shift(const double* points, int64_t n, int64_t D, const Params& params);
}
#endif

Result mean_shift(const double* points, int64_t n, int64_t D, const Params& params) {
#ifdef PANONET_MS_AVX2
  static const bool has_avx2_fma =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const char* force = std::getenv("PANONET_MS_BASELINE");
  if (has_avx2_fma && !(force && force[0] == '1')) {
    return avx2::mean_shift(points, n, D, params);
  }
#endif
  return baseline::mean_shift(points, n, D, params);
}

}  // namespace panonet::ms
