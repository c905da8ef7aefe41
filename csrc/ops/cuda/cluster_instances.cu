// CUDA kernel of panonet::cluster_instances: every (image, class) pair is one group of the batched
// GPU mean-shift (mean_shift_core), all in the same kernel launches. Groups are all B x C pairs,
// empty or not, so that nothing about them has to be read back from the GPU: with
// check_inputs=false the call never waits for it and can be captured in a CUDA graph.
#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/div.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../mean_shift_checks.h"
#include "mean_shift_core.cuh"

namespace panonet::ops {
namespace {

at::Tensor cluster_instances_cuda(const at::Tensor& embedding, const at::Tensor& semantic,
                                  const at::Tensor& bandwidth, int64_t min_bin_freq,
                                  int64_t max_iter, bool check_inputs) {
  const auto [emb_b, sem_b] = check_cluster_instances_inputs(embedding, semantic, bandwidth,
                                                             min_bin_freq, max_iter, check_inputs);
  const c10::cuda::CUDAGuard guard(embedding.device());
  const at::Tensor emb = emb_b.to(at::kDouble).contiguous();
  const at::Tensor sem = sem_b.to(at::kLong).contiguous();
  if (check_inputs) check_all_finite(emb, "panonet.ops.cluster_instances: ", "embedding");
  const int64_t B = emb.size(0), D = emb.size(1), HW = emb.size(2) * emb.size(3);
  const int64_t C = bandwidth.size(0), G = B * C, N = B * HW;
  const auto i64 = sem.options();
  at::Tensor out = at::zeros({N}, i64);
  if (N == 0 || C == 0) return out.reshape(semantic.sizes());
  // A table on the CPU is copied asynchronously as far as CUDA allows from pageable memory; give
  // it on the GPU to be sure of no wait, and for graph capture (a pageable copy is not
  // capturable).
  const at::Tensor table = bandwidth.to(sem.device(), at::kDouble, /*non_blocking=*/true);

  // Group b * C + class of every clustered pixel, G for the others; pixels sorted by group keep
  // raster order within a group, and the others come last.
  const at::Tensor flat = sem.reshape({B, HW});
  const at::Tensor in_table = flat.ge(0).logical_and(flat.lt(C));
  const at::Tensor clustered =
      in_table.logical_and(table.gt(0).index_select(0, flat.clamp(0, C - 1).reshape(-1)).reshape({B, HW}));
  const at::Tensor image = at::arange(B, i64).unsqueeze(1);
  const at::Tensor key = at::where(clustered, image * C + flat, G).reshape(-1);
  const auto [sorted_key, order] = at::sort(key, /*stable=*/true, 0, false);
  ms::cuda::Groups groups;
  groups.points =
      emb.permute({0, 2, 3, 1}).reshape({N, D}).index_select(0, order).contiguous();
  groups.group_of = sorted_key.to(at::kInt);
  groups.lo = at::searchsorted(sorted_key, at::arange(G + 1, i64));
  groups.bandwidth = table.repeat({B});
  const auto r = ms::cuda::mean_shift_groups(groups, G, {true, min_bin_freq, max_iter, true});

  // Instance ids: within an image, groups (classes) in order, each numbering its centers.
  const at::Tensor image_first = at::div(at::arange(G, i64), C, "floor") * C;
  const at::Tensor base =
      r.center_lo.narrow(0, 0, G) - r.center_lo.index_select(0, image_first) + 1;
  const at::Tensor ids = at::where(r.labels.ge(0),
                                   base.index_select(0, sorted_key.clamp_max(G - 1)) + r.labels,
                                   at::zeros({}, i64));
  out.index_copy_(0, order, ids);
  return out.reshape(semantic.sizes());
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CUDA, m) { m.impl("cluster_instances", &cluster_instances_cuda); }

}  // namespace panonet::ops
