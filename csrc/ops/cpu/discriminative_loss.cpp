// CPU kernels of panonet::discriminative_loss and panonet::discriminative_loss_backward.
//
// Three passes over the pixels, each parallel over tiles of one image (at::parallel_for, OpenMP):
//   1. relabel: the distinct ids of each image, sorted, become clusters offsets[b] .. offsets[b+1)-1;
//   2. sums and counts per cluster (thread-private accumulators, summed once at the end);
//   3. per pixel the hinge of eq. (2), accumulating sum v^2 and sum f (x - mu) per cluster.
// The per-cluster terms (eqs. 3, 4 and the stored gradients) are O(C^2 D) per image and cheap.
// The backward is one pass: grad = s_c f (x - mu) + G_c (see discriminative_loss.h).
// Everything accumulates in double: the passes are memory-bound, so this costs nothing measurable.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <vector>

#include "../ceil_div.h"
#include "../discriminative_loss.h"
#include "../discriminative_loss_checks.h"
#include "discriminative_loss_relabel.h"
#include "discriminative_loss_tiles.h"

namespace panonet::ops {
namespace {

using namespace dl_cpu;

// Cap on the thread-private accumulators (doubles); beyond it fewer threads share the work.
constexpr int64_t kMaxPartial = int64_t(1) << 25;

// Runs body(b, p0, p1, acc) over every tile [p0, p1) of every image, in parallel; each thread
// accumulates into its own zeroed buffer of `width` doubles, and the buffers are summed at the end.
template <typename F>
std::vector<double> accumulate_tiles(int64_t B, int64_t HW, int64_t width, const F& body) {
  const int64_t per_image = ceil_div(HW, kTile);
  const int64_t tiles = B * per_image;
  const int64_t parts = std::clamp<int64_t>(kMaxPartial / std::max<int64_t>(width, 1), 1,
                                            at::get_num_threads());
  std::vector<std::vector<double>> partial(parts);
  // A grain of ceil(tiles / parts) makes at::parallel_for use at most `parts` threads.
  at::parallel_for(0, tiles, std::max<int64_t>(1, ceil_div(tiles, parts)),
                   [&](int64_t t0, int64_t t1) {
                     auto& acc = partial[at::get_thread_num()];
                     if (acc.empty()) acc.assign(width, 0.0);
                     for (int64_t t = t0; t < t1; ++t) {
                       const int64_t p0 = (t % per_image) * kTile;
                       body(t / per_image, p0, std::min(HW, p0 + kTile), acc.data());
                     }
                   });
  std::vector<double> total(width, 0.0);
  for (const auto& acc : partial) {
    for (size_t i = 0; i < acc.size(); ++i) total[i] += acc[i];
  }
  return total;
}

// Whether a tile's runs are too short for run-wise loops (mean length below 4): an instance map
// that is not spatially coherent. Such tiles are processed pixel by pixel, each pixel reading
// its own cluster's values (run loops of one pixel made them 3x slower than coherent ones).
inline bool fragmented(int64_t n_runs, int64_t p0, int64_t p1) { return 4 * n_runs > p1 - p0; }

// A maximal run of equal labels inside a tile: the unit of work of every pass, because pixels
// of one run share their cluster, so the inner loops are plain (vectorizable) loops over memory.
struct Run {
  int64_t begin, end;  // pixel range within the image
  int32_t label;       // global cluster index, -1 for ignored pixels
};

// Splits tile [p0, p1) of one image's labels into runs; returns their number (<= p1 - p0). The
// runs are written only if the tile is not fragmented.
int64_t tile_runs(const int32_t* lab, int64_t p0, int64_t p1, Run* runs) {
  // Counted first without branches: a fragmented tile is processed pixel by pixel and needs no
  // runs, and splitting it mispredicted at almost every pixel.
  int64_t boundaries = 0;
  for (int64_t p = p0 + 1; p < p1; ++p) boundaries += lab[p] != lab[p - 1];
  if (fragmented(boundaries + 1, p0, p1)) return boundaries + 1;
  int64_t n = 0;
  for (int64_t p = p0; p < p1;) {
    int64_t q = p + 1;
    while (q < p1 && lab[q] == lab[p]) ++q;
    runs[n++] = Run{p, q, lab[p]};
    p = q;
  }
  return n;
}

// sum_{p in run} x[p] in double.
template <typename scalar_t>
double run_sum(const scalar_t* x, const Run& r) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t p = r.begin; p < r.end; ++p) s += static_cast<double>(x[p]);
  return s;
}

// sum_{p in run} f[p] (x[p] - mu).
template <typename scalar_t>
double run_weighted_deviation(const scalar_t* x, const double* f, double mu, const Run& r) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t p = r.begin; p < r.end; ++p) s += f[p] * (static_cast<double>(x[p]) - mu);
  return s;
}

// grad[p] = scale f[p] (x[p] - mu) + g over the run.
template <typename scalar_t>
void run_backward(const scalar_t* x, const double* f, double mu, double scale, double g,
                  const Run& r, scalar_t* grad) {
#pragma omp simd
  for (int64_t p = r.begin; p < r.end; ++p) {
    grad[p] = static_cast<scalar_t>(scale * f[p] * (static_cast<double>(x[p]) - mu) + g);
  }
}

// Squared distance of each pixel of a tile of runs to its cluster mean (sq[p - p0]; 0 if
// ignored).
template <typename scalar_t>
PANONET_DL_CLONES void tile_sq_dist(const scalar_t* x, const Run* runs, int64_t n_runs,
                                    const double* means, int64_t D, int64_t HW, int64_t p0,
                                    int64_t p1, double* sq) {
  std::fill(sq, sq + (p1 - p0), 0.0);
  for (int64_t d = 0; d < D; ++d) {
    const scalar_t* xd = x + d * HW;
    for (int64_t i = 0; i < n_runs; ++i) {
      const Run& r = runs[i];
      if (r.label < 0) continue;
      const double mu = means[r.label * D + d];
      double* sq_r = sq - p0;
#pragma omp simd
      for (int64_t p = r.begin; p < r.end; ++p) {
        const double diff = static_cast<double>(xd[p]) - mu;
        sq_r[p] += diff * diff;
      }
    }
  }
}

// Whether every value of x[p0:p1) is finite; x * 0 is 0 for finite x and NaN otherwise.
template <typename scalar_t>
bool all_finite(const scalar_t* x, int64_t p0, int64_t p1) {
  float z = 0;
#pragma omp simd reduction(+ : z)
  for (int64_t p = p0; p < p1; ++p) z += static_cast<float>(x[p]) * 0.0f;
  return z == 0.0f;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward_cpu(
    const at::Tensor& embedding_in, const at::Tensor& instance_ids_in, double delta_v,
    double delta_d, double delta_r, int64_t ignore_index, bool check_inputs) {
  check_discriminative_loss_inputs(embedding_in, instance_ids_in, delta_v, delta_d, delta_r);
  const at::Tensor embedding = embedding_in.contiguous();
  const at::Tensor instance_ids = instance_ids_in.contiguous();
  const int64_t B = embedding.size(0), D = embedding.size(1);
  const int64_t HW = embedding.size(2) * embedding.size(3);
  const auto acc_type = embedding.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto i64 = embedding.options().dtype(at::kLong);

  at::Tensor labels = at::empty({B, embedding.size(2), embedding.size(3)},
                                embedding.options().dtype(at::kInt));
  std::vector<int64_t> offsets;
  AT_DISPATCH_INDEX_TYPES(instance_ids.scalar_type(), "discriminative_loss_relabel", [&] {
    offsets = relabel(instance_ids.data_ptr<index_t>(), B, HW, ignore_index,
                      labels.data_ptr<int32_t>());
  });
  const int64_t K = offsets[B];
  const int32_t* lab_all = labels.data_ptr<int32_t>();
  const int64_t W = D + 1;  // per-cluster accumulator row: D sums, then a count / sum of v^2

  at::Tensor losses = at::zeros({B, dl::kTerms}, embedding.options().dtype(acc_type));
  at::Tensor means = at::empty({K, D}, embedding.options().dtype(acc_type));
  at::Tensor mu_grads = at::empty({K, dl::kTerms, D}, embedding.options().dtype(acc_type));
  at::Tensor counts = at::empty({K}, i64);

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, embedding.scalar_type(), "discriminative_loss_cpu", [&] {
        const scalar_t* x_all = embedding.data_ptr<scalar_t>();
        std::atomic<bool> non_finite{false};
        const std::vector<double> sums =
            accumulate_tiles(B, HW, K * W, [&](int64_t b, int64_t p0, int64_t p1, double* acc) {
              const scalar_t* x = x_all + b * D * HW;
              Run runs[kTile];
              const int32_t* lab = lab_all + b * HW;
              const int64_t n_runs = tile_runs(lab, p0, p1, runs);
              bool finite = true;
              if (fragmented(n_runs, p0, p1)) {
                for (int64_t d = 0; d < D; ++d) finite = finite && all_finite(x + d * HW, p0, p1);
                Valid v;
                valid_pixels(lab, p0, p1, v);
                fragmented_sums(x, v, D, HW, p0, acc);
              } else {
                for (int64_t d = 0; d < D; ++d) {
                  const scalar_t* xd = x + d * HW;
                  finite = finite && all_finite(xd, p0, p1);
                  for (int64_t i = 0; i < n_runs; ++i) {
                    if (runs[i].label >= 0) acc[runs[i].label * W + d] += run_sum(xd, runs[i]);
                  }
                }
                for (int64_t i = 0; i < n_runs; ++i) {
                  if (runs[i].label >= 0) {
                    acc[runs[i].label * W + D] += runs[i].end - runs[i].begin;
                  }
                }
              }
              if (!finite) non_finite.store(true, std::memory_order_relaxed);
            });
        if (check_inputs && non_finite.load()) fail_non_finite_embedding();

        // Means are rounded to their stored dtype first, so that the backward, which reads the
        // stored means, sees the very distances the forward used.
        std::vector<double> mu(K * D, 0.0), count(K);
        auto* means_out = means.data_ptr();
        auto* counts_out = counts.data_ptr<int64_t>();
        for (int64_t k = 0; k < K; ++k) {
          count[k] = sums[k * W + D];
          counts_out[k] = static_cast<int64_t>(count[k]);
          for (int64_t d = 0; d < D; ++d) {
            const double m = sums[k * W + d] / count[k];
            if (acc_type == at::kDouble) {
              static_cast<double*>(means_out)[k * D + d] = m;
              mu[k * D + d] = m;
            } else {
              static_cast<float*>(means_out)[k * D + d] = static_cast<float>(m);
              mu[k * D + d] = static_cast<float>(m);
            }
          }
        }

        const std::vector<double> var =
            accumulate_tiles(B, HW, K * W, [&](int64_t b, int64_t p0, int64_t p1, double* acc) {
              const scalar_t* x = x_all + b * D * HW;
              Run runs[kTile];
              const int32_t* lab = lab_all + b * HW;
              const int64_t n_runs = tile_runs(lab, p0, p1, runs);
              double sq[kTile], f_tile[kTile];
              if (fragmented(n_runs, p0, p1)) {
                Valid v;
                valid_pixels(lab, p0, p1, v);
                fragmented_sq_dist(x, v, mu.data(), D, HW, p0, sq);
                fragmented_hinge(x, v, sq, mu.data(), D, HW, p0, delta_v, acc);
                return;
              }
              double* f = f_tile - p0;  // f[p] for p in [p0, p1)
              tile_sq_dist(x, runs, n_runs, mu.data(), D, HW, p0, p1, sq);
              for (int64_t i = 0; i < n_runs; ++i) {
                const Run& r = runs[i];
                if (r.label < 0) continue;
                double v_sq_sum = 0;
                for (int64_t p = r.begin; p < r.end; ++p) {
                  double v_sq;
                  f[p] = dl::var_factor(sq[p - p0], delta_v, &v_sq);
                  v_sq_sum += v_sq;
                }
                acc[r.label * W + D] += v_sq_sum;
              }
              for (int64_t d = 0; d < D; ++d) {
                const scalar_t* xd = x + d * HW;
                for (int64_t i = 0; i < n_runs; ++i) {
                  const Run& r = runs[i];
                  if (r.label < 0) continue;
                  const double m = mu[r.label * D + d];
                  acc[r.label * W + d] += run_weighted_deviation(xd, f, m, r);
                }
              }
            });

        std::vector<double> grads(K * dl::kTerms * D), image(B * dl::kTerms);
        at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
          for (int64_t b = b0; b < b1; ++b) {
            const int64_t first = offsets[b], C = offsets[b + 1] - offsets[b];
            double totals[dl::kTerms] = {0, 0, 0};
            for (int64_t a = 0; a < C; ++a) {
              const int64_t k = first + a;
              const auto t = dl::cluster_terms<double>(
                  mu.data() + first * D, C, D, a, count[k], var[k * W + D], var.data() + k * W,
                  delta_d, delta_r, grads.data() + k * dl::kTerms * D);
              totals[dl::kVar] += t.var;
              totals[dl::kDist] += t.dist;
              totals[dl::kReg] += t.reg;
            }
            dl::image_losses<double>(C, totals[dl::kVar], totals[dl::kDist], totals[dl::kReg],
                                     image.data() + b * dl::kTerms);
          }
        });
        auto copy_out = [&](const std::vector<double>& src, at::Tensor& dst) {
          if (src.empty()) return;
          dst.copy_(at::from_blob(const_cast<double*>(src.data()), dst.sizes(),
                                  at::TensorOptions().dtype(at::kDouble)));
        };
        copy_out(grads, mu_grads);
        copy_out(image, losses);
      });

  at::Tensor offsets_t = at::empty({B + 1}, i64);
  std::copy(offsets.begin(), offsets.end(), offsets_t.data_ptr<int64_t>());
  return {losses, labels, offsets_t, means, mu_grads, counts};
}

at::Tensor backward_cpu(const at::Tensor& grad_losses, const at::Tensor& embedding_in,
                        const at::Tensor& labels_in, const at::Tensor& offsets_in,
                        const at::Tensor& means_in, const at::Tensor& mu_grads_in,
                        const at::Tensor& counts_in, double delta_v) {
  check_discriminative_loss_backward_inputs(grad_losses, embedding_in, labels_in, offsets_in,
                                            means_in, mu_grads_in, counts_in);
  const at::Tensor embedding = embedding_in.contiguous();
  const at::Tensor labels = labels_in.contiguous();
  const int64_t B = embedding.size(0), D = embedding.size(1);
  const int64_t HW = embedding.size(2) * embedding.size(3);
  const int64_t K = means_in.size(0);
  auto as_double = [](const at::Tensor& t) { return t.to(at::kDouble).contiguous(); };
  const at::Tensor g = as_double(grad_losses), means = as_double(means_in);
  const at::Tensor mu_grads = as_double(mu_grads_in), counts = as_double(counts_in);
  const at::Tensor offsets = offsets_in.contiguous();
  const int64_t* off = offsets.data_ptr<int64_t>();
  const double* mu = means.data_ptr<double>();

  // Per cluster: the pixel factor s_c and the through-the-mean vector G_c.
  std::vector<double> s(K, 0.0), G(K * D, 0.0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t C = off[b + 1] - off[b];
    for (int64_t k = off[b]; k < off[b + 1]; ++k) {
      s[k] = dl::cluster_backward<double>(g.data_ptr<double>() + b * dl::kTerms, C,
                                          counts.data_ptr<double>()[k],
                                          mu_grads.data_ptr<double>() + k * dl::kTerms * D, D,
                                          G.data() + k * D);
    }
  }

  at::Tensor grad = at::empty_like(embedding);
  const int32_t* lab_all = labels.data_ptr<int32_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, embedding.scalar_type(), "discriminative_loss_backward_cpu", [&] {
        const scalar_t* x_all = embedding.data_ptr<scalar_t>();
        scalar_t* grad_all = grad.data_ptr<scalar_t>();
        const int64_t per_image = ceil_div(HW, kTile);
        at::parallel_for(0, B * per_image, 1, [&](int64_t t0, int64_t t1) {
          double sq[kTile], f_tile[kTile];
          Run runs[kTile];
          for (int64_t t = t0; t < t1; ++t) {
            const int64_t b = t / per_image, p0 = (t % per_image) * kTile;
            const int64_t p1 = std::min(HW, p0 + kTile);
            const scalar_t* x = x_all + b * D * HW;
            const int32_t* lab = lab_all + b * HW;
            const int64_t n_runs = tile_runs(lab, p0, p1, runs);
            if (fragmented(n_runs, p0, p1)) {
              Valid v;
              valid_pixels(lab, p0, p1, v);
              fragmented_sq_dist(x, v, mu, D, HW, p0, sq);
              for (int64_t j = 0; j < v.n; ++j) {
                double unused;
                f_tile[j] = dl::var_factor(sq[j], delta_v, &unused);
              }
              fragmented_backward(x, v, f_tile, s.data(), mu, G.data(), D, HW, p0, p1,
                                  grad_all + b * D * HW);
              continue;
            }
            double* f = f_tile - p0;
            tile_sq_dist(x, runs, n_runs, mu, D, HW, p0, p1, sq);
            for (int64_t p = p0; p < p1; ++p) {
              double unused;
              f[p] = dl::var_factor(sq[p - p0], delta_v, &unused);
            }
            for (int64_t d = 0; d < D; ++d) {
              const scalar_t* xd = x + d * HW;
              scalar_t* gd = grad_all + b * D * HW + d * HW;
              for (int64_t i = 0; i < n_runs; ++i) {
                const Run& r = runs[i];
                if (r.label < 0) {
                  std::fill(gd + r.begin, gd + r.end, scalar_t(0));
                  continue;
                }
                run_backward(xd, f, mu[r.label * D + d], s[r.label], G[r.label * D + d], r, gd);
              }
            }
          }
        });
      });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CPU, m) {
  m.impl("discriminative_loss", &forward_cpu);
  m.impl("discriminative_loss_backward", &backward_cpu);
}

}  // namespace panonet::ops
