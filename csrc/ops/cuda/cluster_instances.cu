// CUDA kernel of panonet::cluster_instances: every (image, class) group of pixels is one group of
// the batched GPU mean-shift (mean_shift_core), so all of them run in the same kernel launches.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <vector>

#include "../mean_shift_checks.h"
#include "mean_shift_core.cuh"

namespace panonet::ops {
namespace {

at::Tensor cluster_instances_cuda(const at::Tensor& embedding, const at::Tensor& semantic,
                                  const at::Tensor& bandwidth, int64_t min_bin_freq,
                                  int64_t max_iter) {
  const auto [emb_b, sem_b] =
      check_cluster_instances_inputs(embedding, semantic, bandwidth, min_bin_freq, max_iter);
  const c10::cuda::CUDAGuard guard(embedding.device());
  const at::Tensor emb = emb_b.to(at::kDouble).contiguous();
  const at::Tensor sem = sem_b.to(at::kLong).contiguous();
  check_all_finite(emb, "panonet.ops.cluster_instances: ", "embedding");
  const int64_t B = emb.size(0), D = emb.size(1), HW = emb.size(2) * emb.size(3);
  const at::Tensor bw_h = bandwidth.to(at::kDouble).cpu().contiguous();
  const int64_t C = bw_h.size(0);
  const auto i64 = sem.options();
  at::Tensor out = at::zeros({B * HW}, i64);
  if (B * HW == 0 || C == 0) return out.reshape(semantic.sizes());

  // Group key b * C + class of every clustered pixel (-1 elsewhere); pixels sorted by key keep
  // raster order within a group.
  const at::Tensor flat = sem.reshape({B, HW});
  const at::Tensor clustered_class = bw_h.gt(0).to(sem.device());
  const at::Tensor in_table = flat.ge(0).logical_and(flat.lt(C));
  const at::Tensor clustered =
      in_table.logical_and(clustered_class.index_select(0, flat.clamp(0, C - 1).reshape(-1))
                               .reshape({B, HW}));
  const at::Tensor image = at::arange(B, i64).unsqueeze(1).expand({B, HW});
  const at::Tensor key = at::where(clustered, image * C + flat, at::full({}, -1, i64)).reshape(-1);
  const at::Tensor pixels = at::nonzero(key.ge(0)).squeeze(1);
  if (pixels.numel() == 0) return out.reshape(semantic.sizes());
  const auto [sorted_key, order] = at::sort(key.index_select(0, pixels), /*stable=*/true, 0, false);
  const at::Tensor pixel_order = pixels.index_select(0, order);
  const auto [group_key, unused, group_size] =
      at::unique_consecutive(sorted_key, /*return_inverse=*/false, /*return_counts=*/true);
  const at::Tensor key_h = group_key.cpu(), size_h = group_size.cpu();
  const int64_t G = key_h.size(0);
  std::vector<int64_t> offsets(G + 1, 0);
  std::vector<double> group_bw(G);
  for (int64_t g = 0; g < G; ++g) {
    offsets[g + 1] = offsets[g] + size_h.data_ptr<int64_t>()[g];
    group_bw[g] = bw_h.data_ptr<double>()[key_h.data_ptr<int64_t>()[g] % C];
  }
  const at::Tensor points =
      emb.permute({0, 2, 3, 1}).reshape({B * HW, D}).index_select(0, pixel_order).contiguous();
  const auto r = ms::cuda::mean_shift_groups(points, offsets, group_bw,
                                             {true, min_bin_freq, max_iter, true});

  // Instance ids: within an image, groups (classes) in order, each numbering its centers.
  std::vector<int64_t> base(G);
  for (int64_t g = 0, next = 1; g < G; ++g) {
    const bool new_image = g == 0 || key_h.data_ptr<int64_t>()[g] / C != key_h.data_ptr<int64_t>()[g - 1] / C;
    if (new_image) next = 1;
    base[g] = next;
    next += r.center_offsets[g + 1] - r.center_offsets[g];
  }
  const at::Tensor base_of_point = at::repeat_interleave(
      at::tensor(base, at::TensorOptions().dtype(at::kLong)).to(sem.device()), group_size);
  const at::Tensor ids = at::where(r.labels.ge(0), base_of_point + r.labels, at::zeros({}, i64));
  out.index_copy_(0, pixel_order, ids);
  return out.reshape(semantic.sizes());
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CUDA, m) { m.impl("cluster_instances", &cluster_instances_cuda); }

}  // namespace panonet::ops
