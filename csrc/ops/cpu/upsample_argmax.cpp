// CPU kernel of panonet::upsample_argmax. A task runs through consecutive output rows; for each
// it needs every class's two source rows blended between columns to the output width, which it
// keeps from one output row to the next (at 4x upsampling four output rows share them), then
// blends those between the rows and keeps the running best class, in contiguous loops that
// vectorize. The upsampled logits are never stored. Built with -ffp-contract=off: the vectorized
// clones and the CUDA kernel round exactly as the scalar code does.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "../upsample_argmax.h"
#include "../upsample_argmax_checks.h"

namespace panonet::ops {
namespace {

// GCC and Clang build the row loop twice (AVX2, and the baseline) and pick at load time.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PANONET_UA_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PANONET_UA_CLONES
#endif

// The output columns' taps.
struct Columns {
  std::vector<int64_t> lo, hi;
  std::vector<float> w_lo, w_hi;
  Columns(int64_t w, int64_t W) : lo(W), hi(W), w_lo(W), w_hi(W) {
    for (int64_t X = 0; X < W; ++X) {
      const upsample::Tap t = upsample::tap(X, w, W);
      lo[X] = t.lo;
      hi[X] = t.hi;
      w_lo[X] = t.w_lo;
      w_hi[X] = t.w_hi;
    }
  }
};

// One class of one output row: its values blended between the two source rows (each already
// blended between columns), the best so far updated.
template <typename T>
inline void update_row(const T* lo, const T* hi, T w_lo, T w_hi, int64_t W, int32_t c, T* best,
                       int32_t* label) {
  for (int64_t X = 0; X < W; ++X) {
    const T v = upsample::blend<T>(lo[X], hi[X], w_lo, w_hi);
    const T b = best[X];
    // Bitwise, not short-circuit: a branch here would keep the loop from vectorizing.
    const bool take = (c == 0) | upsample::beats(v, b);
    best[X] = take ? v : b;
    label[X] = take ? c : label[X];
  }
}

PANONET_UA_CLONES void update_row_float(const float* lo, const float* hi, float w_lo, float w_hi,
                                        int64_t W, int32_t c, float* best, int32_t* label) {
  update_row<float>(lo, hi, w_lo, w_hi, W, c, best, label);
}

template <typename T>
void update(const T* lo, const T* hi, T w_lo, T w_hi, int64_t W, int32_t c, T* best,
            int32_t* label) {
  if constexpr (std::is_same_v<T, float>) {
    update_row_float(lo, hi, w_lo, w_hi, W, c, best, label);
  } else {
    update_row<T>(lo, hi, w_lo, w_hi, W, c, best, label);
  }
}

// Source row y of image b, every class, blended between columns to width W: (C, W) into out.
template <typename scalar_t, typename T>
void columns_blended(const scalar_t* x, int64_t b, int64_t y, int64_t C, int64_t h, int64_t w,
                     int64_t W, const Columns& cols, T* out) {
  for (int64_t c = 0; c < C; ++c) {
    const scalar_t* src = x + ((b * C + c) * h + y) * w;
    T* dst = out + c * W;
    for (int64_t X = 0; X < W; ++X) {
      dst[X] = upsample::blend<T>(src[cols.lo[X]], src[cols.hi[X]], cols.w_lo[X], cols.w_hi[X]);
    }
  }
}

template <typename scalar_t>
void upsample_argmax_rows(const scalar_t* x, int64_t B, int64_t C, int64_t h, int64_t w,
                          int64_t H, int64_t W, int64_t* out) {
  using T = at::opmath_type<scalar_t>;
  const Columns cols(w, W);
  // Consecutive output rows per task, so that they share source rows; the grain keeps tasks of
  // >= ~64k outputs.
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, W));
  at::parallel_for(0, B * H, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> row_lo(C * W), row_hi(C * W), best(W);
    std::vector<int32_t> label(W);
    // Which (image, source row) row_lo and row_hi hold; -1: none yet.
    std::pair<int64_t, int64_t> held_lo{-1, -1}, held_hi{-1, -1};
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / H, Y = r % H;
      const upsample::Tap row = upsample::tap(Y, h, H);
      const std::pair<int64_t, int64_t> want_lo{b, row.lo}, want_hi{b, row.hi};
      if (want_lo != held_lo) {
        if (want_lo == held_hi) {
          std::swap(row_lo, row_hi);
          std::swap(held_lo, held_hi);
        } else {
          columns_blended(x, b, row.lo, C, h, w, W, cols, row_lo.data());
          held_lo = want_lo;
        }
      }
      if (want_hi != held_hi) {
        columns_blended(x, b, row.hi, C, h, w, W, cols, row_hi.data());
        held_hi = want_hi;
      }
      const T wy_lo = row.w_lo, wy_hi = row.w_hi;
      for (int64_t c = 0; c < C; ++c) {
        update<T>(row_lo.data() + c * W, row_hi.data() + c * W, wy_lo, wy_hi, W,
                  static_cast<int32_t>(c), best.data(), label.data());
      }
      std::copy(label.begin(), label.end(), out + r * W);
    }
  });
}

at::Tensor upsample_argmax_cpu(const at::Tensor& logits, at::IntArrayRef size) {
  const auto [x, hw] = check_upsample_argmax_inputs(logits, size);
  const auto [H, W] = hw;
  const int64_t B = x.size(0), C = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor out = at::empty({B, H, W}, x.options().dtype(at::kLong));
  if (out.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upsample_argmax",
                                    [&] {
                                      upsample_argmax_rows<scalar_t>(x.const_data_ptr<scalar_t>(),
                                                                     B, C, h, w, H, W,
                                                                     out.data_ptr<int64_t>());
                                    });
  }
  return logits.dim() == 3 ? out.squeeze(0) : out;
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CPU, m) { m.impl("upsample_argmax", &upsample_argmax_cpu); }

}  // namespace panonet::ops
