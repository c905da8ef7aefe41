// CUDA kernel of panonet::_nearest_by_projection: the labelling search of the GPU mean-shift
// (../mean_shift_projection.h), one thread per point, for tests that compare it with the CPU.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../mean_shift_checks.h"
#include "../mean_shift_post.h"
#include "../mean_shift_projection.h"

namespace panonet::ops {
namespace {

constexpr int kThreads = 256;

__global__ void nearest_kernel(const double* x, int64_t N, int64_t D, const double* rows,
                               const double* keys, const int64_t* rank, int64_t K, int64_t axis,
                               int64_t* labels, int64_t* visited) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= N) return;
  double d2;
  labels[i] = ms::nearest_by_projection(x + i * D, rows, keys, rank, K, D, axis, &d2, visited + i);
}

std::tuple<at::Tensor, at::Tensor> nearest_by_projection_cuda(const at::Tensor& points,
                                                              const at::Tensor& centers) {
  check_nearest_by_projection_inputs(points, centers);
  const c10::cuda::CUDAGuard guard(points.device());
  const at::Tensor x = points.to(at::kDouble).contiguous();
  const at::Tensor c = centers.to(at::kDouble).cpu().contiguous();  // a test hook: syncs
  const int64_t N = x.size(0), K = c.size(0), D = x.size(1);
  const ms::ProjectedCenters pc = ms::project_centers(c.data_ptr<double>(), K, D);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const auto i64 = at::TensorOptions().dtype(at::kLong);
  const at::Tensor rows = at::tensor(pc.rows, f64).to(x.device());
  const at::Tensor keys = at::tensor(pc.keys, f64).to(x.device());
  const at::Tensor rank = at::tensor(pc.rank, i64).to(x.device());
  at::Tensor labels = at::empty({N}, x.options().dtype(at::kLong));
  at::Tensor visited = at::empty({N}, x.options().dtype(at::kLong));
  if (N > 0) {
    nearest_kernel<<<(N + kThreads - 1) / kThreads, kThreads, 0,
                     at::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<double>(), N, D, rows.data_ptr<double>(), keys.data_ptr<double>(),
        rank.data_ptr<int64_t>(), K, pc.axis, labels.data_ptr<int64_t>(),
        visited.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {labels, visited};
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CUDA, m) {
  m.impl("_nearest_by_projection", &nearest_by_projection_cuda);
}

}  // namespace panonet::ops
