// CPU kernel of panonet::upsample_instances. Per image: the class of every id from the
// low-resolution maps; one pass over the output (in parallel, a pixel count per thread) takes each
// pixel's source id, kept where the output's class agrees (else, with reach, the nearest id of its
// class near the source); then ids with too few pixels go and the rest are renumbered in order, in
// a second pass. Instance ids are checked as they are read.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "../upsample_instances.h"
#include "../upsample_instances_checks.h"

namespace panonet::ops {
namespace {

namespace ui = upsample_instances;

at::Tensor upsample_instances_cpu(const at::Tensor& instance, const at::Tensor& semantic_lowres,
                                  const std::optional<at::Tensor>& semantic_fullres,
                                  at::IntArrayRef size, int64_t max_instance_id,
                                  int64_t min_size, int64_t reach) {
  constexpr const char* op = "panonet.ops.upsample_instances: ";
  const auto [inst, low, full, H, W] = check_upsample_instances_inputs(
      instance, semantic_lowres, semantic_fullres, size, max_instance_id, min_size, reach);
  const int64_t B = inst.size(0), h = inst.size(1), w = inst.size(2), K = max_instance_id;
  at::Tensor out = at::empty({B, H, W}, inst.options());
  if (out.numel() > 0) {
    const bool has_full = full.defined();
    const bool reaching = has_full && reach > 0;
    std::vector<int64_t> iy(H), ix(W);
    for (int64_t Y = 0; Y < H; ++Y) iy[Y] = ui::nearest(Y, h, H);
    for (int64_t X = 0; X < W; ++X) ix[X] = ui::nearest(X, w, W);
    const int threads = at::get_num_threads();
    std::vector<int64_t> cls(K + 1), renumbered(K + 1);
    std::vector<std::vector<int32_t>> counts(threads, std::vector<int32_t>(K + 1));
    const int64_t keep_from = std::max<int64_t>(min_size, 1);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t* in = inst.const_data_ptr<int64_t>() + b * h * w;
      const int64_t* sem = low.const_data_ptr<int64_t>() + b * h * w;
      const int64_t* cls_full = has_full ? full.const_data_ptr<int64_t>() + b * H * W : nullptr;
      int64_t* o = out.data_ptr<int64_t>() + b * H * W;
      for (int64_t i = 0; i < h * w; ++i) {
        TORCH_CHECK_VALUE(in[i] >= 0 && in[i] <= K, op,
                          "expected instance ids in [0, max_instance_id = ", K, "], got ", in[i],
                          " in image ", b);
        cls[in[i]] = sem[i];  // one class per id: cluster_instances clusters classes apart
      }
      for (auto& c : counts) std::fill(c.begin(), c.end(), 0);
      at::parallel_for(0, H, std::max<int64_t>(1, 16384 / std::max<int64_t>(W, 1)),
                       [&](int64_t begin, int64_t end) {
                         int32_t* count = counts[at::get_thread_num()].data();
                         for (int64_t Y = begin; Y < end; ++Y) {
                           const int64_t* row = in + iy[Y] * w;
                           const int64_t* sem_row = sem + iy[Y] * w;
                           for (int64_t X = 0; X < W; ++X) {
                             const int64_t p = Y * W + X;
                             const int64_t k0 = row[ix[X]];
                             int64_t k = ui::kept_id(k0, has_full, has_full ? cls_full[p] : 0,
                                                     cls[k0]);
                             if (reaching && k == 0 && sem_row[ix[X]] != cls_full[p]) {
                               k = ui::reached_id(in, sem, h, w, H, W, Y, X, iy[Y], ix[X],
                                                  cls_full[p], reach, K);
                             }
                             o[p] = k;
                             ++count[k];
                           }
                         }
                       });
      int64_t next = 0;
      renumbered[0] = 0;
      for (int64_t k = 1; k <= K; ++k) {
        int64_t n = 0;
        for (const auto& c : counts) n += c[k];
        renumbered[k] = n >= keep_from ? ++next : 0;
      }
      at::parallel_for(0, H * W, 65536, [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) o[p] = renumbered[o[p]];
      });
    }
  }
  return instance.dim() == 2 ? out.squeeze(0) : out;
}

}  // namespace

TORCH_LIBRARY_IMPL(panonet, CPU, m) { m.impl("upsample_instances", &upsample_instances_cpu); }

}  // namespace panonet::ops
