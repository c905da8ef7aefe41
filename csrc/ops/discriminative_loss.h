// Math of the discriminative loss (PanoNet eqs. 2-5), shared by the CPU and the CUDA kernels so that
// the CPU tests cover every formula the GPU runs.
//
// Notation, per image with C clusters (cluster c: N_c pixels x_i, mean mu_c):
//   v_i = [||x_i - mu_c|| - delta_v]_+          f_i = v_i / ||x_i - mu_c||   (0 where the norm is 0)
//   L_var  = 1/C sum_c 1/N_c sum_i v_i^2                                           (eq. 2)
//   L_dist = 1/(C(C-1)) sum_{a != b} [2 delta_d - ||mu_a - mu_b||]_+^2             (eq. 3)
//   L_reg  = 1/C sum_c 1/N_c [||mu_c|| - delta_r]_+^2                              (eq. 4)
// Gradient of the per-image loss g_var L_var + g_dist L_dist + g_reg L_reg w.r.t. pixel i of cluster c:
//   s_c f_i (x_i - mu_c) + G_c,   s_c = 2 g_var / (C N_c),
//   G_c = (g_var dL_var/dmu_c + g_dist dL_dist/dmu_c + g_reg dL_reg/dmu_c) / N_c   (through the mean)
// where dL_var/dmu_c = -2/(C N_c) sum_i f_i (x_i - mu_c). The forward stores the three dL/dmu_c
// vectors per cluster ("mu_grads", K x 3 x D), so the backward is one pass over the pixels.
// A norm of exactly 0 gets subgradient 0, as torch.linalg.vector_norm's backward does.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace panonet::dl {

// Rows of the per-cluster mu_grads buffer (K, 3, D); also the columns of the (B, 3) losses.
constexpr int kVar = 0;
constexpr int kDist = 1;
constexpr int kReg = 2;
constexpr int kTerms = 3;

template <typename T>
PANONET_HD inline T root(T x) {
#if defined(__CUDA_ARCH__)
  return sqrt(x);
#else
  return std::sqrt(x);
#endif
}

// [x]_+, NaN kept: with the op's NaN/Inf check off, a non-finite embedding must give a
// non-finite loss rather than vanish in a hinge.
template <typename T>
PANONET_HD inline T hinge(T x) {
  return (x > T(0) || x != x) ? x : T(0);
}

// Per pixel, from its squared distance to its cluster mean: stores v^2 and returns f = v / d.
template <typename T>
PANONET_HD inline T var_factor(T sq_dist, T delta_v, T* v_sq) {
  const T d = root(sq_dist);
  const T v = hinge(d - delta_v);
  *v_sq = v * v;
  return d > T(0) ? v / d : T(0);
}

// Loss terms of one cluster before the per-image normalisation (1/C, 1/(C(C-1))).
template <typename T>
struct ClusterTerms {
  T var;   // 1/N_a sum_i v_i^2
  T dist;  // sum_{b != a} [2 delta_d - ||mu_a - mu_b||]_+^2
  T reg;   // 1/N_a [||mu_a|| - delta_r]_+^2
};

// Cluster a of an image with C clusters whose means are `means` (C x D, row-major).
//   count: N_a; sum_v_sq: sum_i v_i^2; var_sum: sum_i f_i (x_i - mu_a) (D).
// Writes dL_var/dmu_a, dL_dist/dmu_a and dL_reg/dmu_a (each D) to mu_grad (3 x D).
template <typename T>
PANONET_HD inline ClusterTerms<T> cluster_terms(const T* means, int64_t C, int64_t D, int64_t a,
                                                T count, T sum_v_sq, const T* var_sum, T delta_d,
                                                T delta_r, T* mu_grad) {
  const T inv_c = T(1) / T(C);
  const T inv_n = T(1) / count;
  const T* mu_a = means + a * D;
  T* g_var = mu_grad + kVar * D;
  T* g_dist = mu_grad + kDist * D;
  T* g_reg = mu_grad + kReg * D;

  T sq_norm = 0;
  for (int64_t d = 0; d < D; ++d) {
    g_var[d] = T(-2) * inv_c * inv_n * var_sum[d];
    g_dist[d] = 0;
    sq_norm += mu_a[d] * mu_a[d];
  }

  // Each unordered pair appears twice in eq. (3), hence 2 x (-2 h / dist) per row.
  T dist_sum = 0;
  const T pair_scale = C > 1 ? T(1) / (T(C) * T(C - 1)) : T(0);
  for (int64_t b = 0; b < C; ++b) {
    if (b == a) continue;
    const T* mu_b = means + b * D;
    T sq = 0;
    for (int64_t d = 0; d < D; ++d) {
      const T diff = mu_a[d] - mu_b[d];
      sq += diff * diff;
    }
    const T dist = root(sq);
    const T h = hinge(T(2) * delta_d - dist);
    if (h > T(0)) {
      dist_sum += h * h;
      const T coef = dist > T(0) ? T(-4) * h * pair_scale / dist : T(0);
      for (int64_t d = 0; d < D; ++d) g_dist[d] += coef * (mu_a[d] - mu_b[d]);
    }
  }

  const T norm = root(sq_norm);
  const T r = hinge(norm - delta_r);
  const T reg_coef = norm > T(0) ? T(2) * r * inv_c * inv_n / norm : T(0);
  for (int64_t d = 0; d < D; ++d) g_reg[d] = reg_coef * mu_a[d];

  return ClusterTerms<T>{sum_v_sq * inv_n, dist_sum, r * r * inv_n};
}

// Per-image losses [L_var, L_dist, L_reg] from the sums of ClusterTerms over its C clusters.
template <typename T>
PANONET_HD inline void image_losses(int64_t C, T var_sum, T dist_sum, T reg_sum, T* out) {
  out[kVar] = C > 0 ? var_sum / T(C) : T(0);
  out[kDist] = C > 1 ? dist_sum / (T(C) * T(C - 1)) : T(0);
  out[kReg] = C > 0 ? reg_sum / T(C) : T(0);
}

// Backward, per cluster: the pixel factor s_c and the through-the-mean vector G_c (D).
//   grad_loss: the (3) upstream gradients of this image's [L_var, L_dist, L_reg].
template <typename T>
PANONET_HD inline T cluster_backward(const T* grad_loss, int64_t C, T count, const T* mu_grad,
                                     int64_t D, T* G) {
  const T inv_n = T(1) / count;
  for (int64_t d = 0; d < D; ++d) {
    G[d] = (grad_loss[kVar] * mu_grad[kVar * D + d] + grad_loss[kDist] * mu_grad[kDist * D + d] +
            grad_loss[kReg] * mu_grad[kReg * D + d]) *
           inv_n;
  }
  return T(2) * grad_loss[kVar] / (T(C) * count);
}

}  // namespace panonet::dl
