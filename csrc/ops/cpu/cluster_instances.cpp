// CPU kernel of panonet::cluster_instances: per image and per clustered class, mean-shift over
// the embeddings of that class's pixels; instance ids numbered by class, then by center rank.
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <vector>

#include "../mean_shift_checks.h"
#include "mean_shift_core.h"

namespace panonet::ops {
namespace {

at::Tensor cluster_instances_cpu(const at::Tensor& embedding, const at::Tensor& semantic,
                                 const at::Tensor& bandwidth, int64_t min_bin_freq,
                                 int64_t max_iter, bool /*check_inputs: always on the CPU*/) {
  const auto [emb_b, sem_b] = check_cluster_instances_inputs(embedding, semantic, bandwidth,
                                                             min_bin_freq, max_iter, true);
  const at::Tensor emb = emb_b.to(at::kDouble).contiguous();
  const at::Tensor sem = sem_b.to(at::kLong).contiguous();
  const at::Tensor bw = bandwidth.to(at::kDouble).to(at::kCPU).contiguous();
  check_all_finite(emb, "panonet.ops.cluster_instances: ", "embedding");
  const int64_t B = emb.size(0), D = emb.size(1), HW = emb.size(2) * emb.size(3);
  const int64_t num_classes = bw.size(0);
  const double* bw_ptr = bw.data_ptr<double>();

  at::Tensor out = at::zeros({B, emb.size(2), emb.size(3)}, sem.options());
  int64_t* out_ptr = out.data_ptr<int64_t>();
  const double* emb_ptr = emb.data_ptr<double>();
  const int64_t* sem_ptr = sem.data_ptr<int64_t>();

  std::vector<std::vector<int64_t>> pixels(num_classes);
  std::vector<double> points;
  for (int64_t b = 0; b < B; ++b) {
    for (auto& p : pixels) p.clear();
    for (int64_t i = 0; i < HW; ++i) {
      const int64_t c = sem_ptr[b * HW + i];
      if (c >= 0 && c < num_classes && bw_ptr[c] > 0) pixels[c].push_back(i);
    }
    int64_t next_id = 1;
    for (int64_t c = 0; c < num_classes; ++c) {
      const auto& pix = pixels[c];
      if (pix.empty()) continue;
      const int64_t n = static_cast<int64_t>(pix.size());
      points.resize(n * D);
      for (int64_t d = 0; d < D; ++d) {
        const double* plane = emb_ptr + (b * D + d) * HW;
        for (int64_t j = 0; j < n; ++j) points[j * D + d] = plane[pix[j]];
      }
      const ms::Result r = ms::mean_shift(points.data(), n, D,
                                          {bw_ptr[c], true, min_bin_freq, max_iter, true});
      for (int64_t j = 0; j < n; ++j) {
        if (r.labels[j] >= 0) out_ptr[b * HW + pix[j]] = next_id + r.labels[j];
      }
      next_id += r.num_centers;
    }
  }
  return semantic.dim() == 2 ? out.squeeze(0) : out;
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CPU, m) { m.impl("cluster_instances", &cluster_instances_cpu); }

}  // namespace panonet::ops
