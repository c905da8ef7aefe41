// Vector lanes of the CPU mean-shift's window queries: kBatch seeds, one per lane, and the
// per-thread scratch buffers.
// Part of the CPU mean-shift core: included by mean_shift_core.cpp only, inside the namespace of
// the instruction set it is compiled for (baseline or AVX2, see mean_shift_core_avx2.cpp).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "mean_shift_isa.h"

namespace panonet::ms::PANONET_MS_ISA {
namespace {

// kBatch lanes of float32 / float64 (GCC/Clang vector extensions: one AVX register of floats).
typedef float Lanes __attribute__((vector_size(kBatch * sizeof(float))));
typedef double LanesD __attribute__((vector_size(kBatch * sizeof(double))));
typedef int32_t LanesI __attribute__((vector_size(kBatch * sizeof(int32_t))));

// Bit k set where lane k of a -1/0 mask is set.
inline int lane_bits(LanesI v) {
#if defined(__AVX__)
  return _mm256_movemask_ps(_mm256_castsi256_ps(reinterpret_cast<__m256i>(v)));
#else
  int bits = 0;
  for (int k = 0; k < kBatch; ++k) bits |= (v[k] != 0) << k;
  return bits;
#endif
}

// a * b + c, fused in the AVX2 + FMA build. Only for the float32 prefilter, whose guard band
// covers either rounding; sklearn's float64 test stays unfused (-ffp-contract=off).
inline Lanes fused_multiply_add(Lanes a, Lanes b, Lanes c) {
#if defined(__FMA__)
  return reinterpret_cast<Lanes>(_mm256_fmadd_ps(reinterpret_cast<__m256>(a),
                                                 reinterpret_cast<__m256>(b),
                                                 reinterpret_cast<__m256>(c)));
#else
  return a * b + c;
#endif
}

// acc += x * take, take 0.0 or 1.0 per lane: x * take is exact, so fused or not the sums are
// the same.
inline void add_product(LanesD& acc, double x, const LanesD& take) {
#if defined(__FMA__)
  static_assert(sizeof(LanesD) == 2 * sizeof(__m256d));
  __m256d* a = reinterpret_cast<__m256d*>(&acc);
  const __m256d* t = reinterpret_cast<const __m256d*>(&take);
  const __m256d xv = _mm256_set1_pd(x);
  a[0] = _mm256_fmadd_pd(xv, t[0], a[0]);
  a[1] = _mm256_fmadd_pd(xv, t[1], a[1]);
#else
  acc += x * take;
#endif
}

// Heap arrays of lane vectors, aligned by hand. std::vector<Lanes> would be one template
// instantiation shared by the baseline and AVX2 translation units, which disagree on the type's
// alignment (16 vs 32 bytes); the linker keeps one, and aligned AVX stores then fault.
class LaneArray {
 public:
  template <typename V>
  V* get(int64_t count) {
    bytes_.resize(count * sizeof(V) + kAlign);
    const auto addr = reinterpret_cast<uintptr_t>(bytes_.data());
    return reinterpret_cast<V*>((addr + kAlign - 1) & ~uintptr_t(kAlign - 1));
  }

 private:
  static constexpr uintptr_t kAlign = 64;
  std::vector<unsigned char> bytes_;
};

// Per-thread buffers of the window queries.
struct Scratch {
  std::vector<std::pair<int64_t, Mask>> stack;
  LaneArray q_offset;  // D Lanes: each seed's mean minus the leaf mean, lane k = seed k
  LaneArray acc;       // D LanesD: window sums gathered in one leaf
  LaneArray means;     // D LanesD: the seeds' means, lane k = seed k
  const LanesD* means_t = nullptr;
};

}  // namespace
}  // namespace panonet::ms::PANONET_MS_ISA
