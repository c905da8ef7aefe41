// CPU kernel of panonet::panoptic_ids. Per image: one pass marks which (thing class, instance id)
// pairs occur, a running count over each class's ids gives every pair its rank, and a second
// pass (in parallel) writes each pixel's id. Two passes over the maps instead of the ~20 of the
// same computation written as tensor operations. Instance ids are checked as they are read: the
// CPU has no device to wait for.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <memory>
#include <tuple>
#include <vector>

#include "../panoptic_ids.h"
#include "../panoptic_ids_checks.h"

namespace panonet::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> panoptic_ids_cpu(const at::Tensor& semantic,
                                                    const at::Tensor& instance,
                                                    const at::Tensor& label_of_class,
                                                    const at::Tensor& thing_index,
                                                    int64_t num_things, int64_t max_instance_id,
                                                    int64_t label_divisor) {
  constexpr const char* op = "panonet.ops.panoptic_ids: ";
  const auto [sem, inst] = check_panoptic_ids_inputs(semantic, instance, label_of_class,
                                                     thing_index, num_things, max_instance_id,
                                                     label_divisor);
  const at::Tensor labels = label_of_class.contiguous();
  const at::Tensor things = thing_index.contiguous();
  const int64_t C = labels.numel(), T = num_things, K = max_instance_id;
  const int64_t* label_ptr = labels.const_data_ptr<int64_t>();
  const int64_t* thing_ptr = things.const_data_ptr<int64_t>();
  for (int64_t c = 0; c < C; ++c) {
    TORCH_CHECK_VALUE(thing_ptr[c] >= -1 && thing_ptr[c] < T, op, "expected thing_index in [-1, ",
                      T, "), got ", thing_ptr[c], " for class ", c);
  }
  const int64_t B = sem.size(0), P = sem.numel() / std::max<int64_t>(B, 1);
  at::Tensor out = at::empty(sem.sizes(), sem.options());
  const int64_t* sem_ptr = sem.const_data_ptr<int64_t>();
  const int64_t* inst_ptr = inst.const_data_ptr<int64_t>();
  int64_t* out_ptr = out.data_ptr<int64_t>();
  // rank[t * (K + 1) + k]: the rank of id k among class t's ids in the image (0, 1, ...), set
  // and read only where occurs[...] says that the pair occurs (left uninitialized: with the bound
  // merge passes, K + 1 is the 1/4-scale pixel count, and zeroing 8 MB would cost more than the
  // rest).
  const std::unique_ptr<int64_t[]> rank(new int64_t[T * (K + 1)]);
  std::vector<uint8_t> occurs(T * (K + 1));
  int64_t most = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t* s = sem_ptr + b * P;
    const int64_t* in = inst_ptr + b * P;
    std::fill(occurs.begin(), occurs.end(), 0);
    for (int64_t p = 0; p < P; ++p) {
      const int64_t t = panoptic::thing_of(s[p], C, thing_ptr);
      if (t < 0) continue;
      const int64_t k = in[p];
      TORCH_CHECK_VALUE(k >= 0 && k <= K, op, "expected instance ids in [0, max_instance_id = ", K,
                        "] on thing pixels, got ", k, " in image ", b);
      occurs[t * (K + 1) + k] = 1;
    }
    for (int64_t t = 0; t < T; ++t) {
      int64_t n = 0;
      for (int64_t k = 1; k <= K; ++k) {
        if (occurs[t * (K + 1) + k]) rank[t * (K + 1) + k] = n++;
      }
      most = std::max(most, n);
    }
    at::parallel_for(0, P, 65536, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t c = s[p];
        const int64_t t = panoptic::thing_of(c, C, thing_ptr);
        const int64_t k = in[p];
        const int64_t r = (t >= 0 && k > 0) ? rank[t * (K + 1) + k] : 0;
        out_ptr[b * P + p] = panoptic::panoptic_id(c, t, k, r, label_ptr, label_divisor);
      }
    });
  }
  return {semantic.dim() == 2 ? out.squeeze(0) : out, at::scalar_tensor(most, sem.options())};
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CPU, m) { m.impl("panoptic_ids", &panoptic_ids_cpu); }

}  // namespace panonet::ops
