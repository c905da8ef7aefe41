// CPU kernel of panonet::_nearest_by_projection: runs the GPU labelling search
// (../mean_shift_projection.h) on the host, so that the CPU tests check the code the CUDA
// kernel runs, and counts its work.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../mean_shift_checks.h"
#include "../mean_shift_post.h"
#include "../mean_shift_projection.h"

namespace panonet::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> nearest_by_projection_cpu(const at::Tensor& points,
                                                             const at::Tensor& centers) {
  check_nearest_by_projection_inputs(points, centers);
  const at::Tensor x = points.to(at::kDouble).contiguous();
  const at::Tensor c = centers.to(at::kDouble).contiguous();
  const int64_t N = x.size(0), K = c.size(0), D = x.size(1);
  const ms::ProjectedCenters pc = ms::project_centers(c.data_ptr<double>(), K, D);
  at::Tensor labels = at::empty({N}, x.options().dtype(at::kLong));
  at::Tensor visited = at::empty({N}, x.options().dtype(at::kLong));
  int64_t* l = labels.data_ptr<int64_t>();
  int64_t* v = visited.data_ptr<int64_t>();
  const double* xp = x.data_ptr<double>();
  at::parallel_for(0, N, 1024, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      double d2;
      l[i] = ms::nearest_by_projection(xp + i * D, pc.rows.data(), pc.keys.data(),
                                       pc.rank.data(), K, D, pc.axis, &d2, v + i);
    }
  });
  return {labels, visited};
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CPU, m) {
  m.impl("_nearest_by_projection", &nearest_by_projection_cpu);
}

}  // namespace panonet::ops
