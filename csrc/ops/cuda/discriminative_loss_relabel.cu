// The relabelling pass of the CUDA discriminative loss, without reading anything back to the
// host: per image an open-addressing table of the distinct ids (2^k >= 2 HW slots, so never more
// than half full; ignore_index, which is never inserted, marks an empty slot) that also keeps each
// id's first pixel (atomicMin, so the same on every run). Clusters are numbered by image, then by
// first pixel in raster order: a pixel that is the first of its id is flagged, an inclusive scan
// of the flags over the batch gives every first pixel its global cluster index, and the images'
// offsets are the scan at the image boundaries.
#include <ATen/core/Tensor.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "../ceil_div.h"
#include "../hash.h"
#include "discriminative_loss_launch.cuh"
#include "discriminative_loss_relabel.cuh"

namespace panonet::ops::loss_cuda {
namespace {

// Slot of id in one image's table (mask = slots - 1), inserting it if absent.
__device__ inline int64_t table_insert(unsigned long long* keys, int64_t mask,
                                       unsigned long long id, unsigned long long empty) {
  for (int64_t h = static_cast<int64_t>(mix64(id)) & mask;; h = (h + 1) & mask) {
    const unsigned long long seen = keys[h];
    if (seen == id) return h;
    if (seen == empty) {
      const unsigned long long prev = atomicCAS(keys + h, empty, id);
      if (prev == empty || prev == id) return h;
    }
  }
}

// Slot of an id that is in the table.
__device__ inline int64_t table_find(const unsigned long long* keys, int64_t mask,
                                     unsigned long long id) {
  int64_t h = static_cast<int64_t>(mix64(id)) & mask;
  while (keys[h] != id) h = (h + 1) & mask;
  return h;
}

__global__ void table_clear_kernel(unsigned long long* keys, int32_t* first, int64_t n,
                                   unsigned long long empty) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    keys[i] = empty;
    first[i] = INT32_MAX;
  }
}

// Inserts every id of image blockIdx.y and keeps its first pixel. Lanes whose id equals the
// previous lane's skip the table: a segmentation map is mostly runs of one id.
template <typename id_t>
__global__ void table_insert_kernel(const id_t* ids, int64_t HW, int64_t ignore_index,
                                    int64_t slots, unsigned long long* keys, int32_t* first) {
  const int64_t b = blockIdx.y;
  const BlockRange r = block_range(HW);
  unsigned long long* k = keys + b * slots;
  for (int64_t base = r.begin; base < r.end; base += blockDim.x) {
    const int64_t p = base + threadIdx.x;
    const long long id = p < r.end ? static_cast<long long>(ids[b * HW + p]) : ignore_index;
    const long long prev = __shfl_up_sync(kFullMask, id, 1);
    if (id == ignore_index || ((threadIdx.x & 31) != 0 && prev == id)) continue;
    const int64_t h = table_insert(k, slots - 1, static_cast<unsigned long long>(id),
                                   static_cast<unsigned long long>(ignore_index));
    atomicMin(first + b * slots + h, static_cast<int32_t>(p));
  }
}

// Per pixel: its slot (-1 if ignored) and whether it is the first pixel of its id.
template <typename id_t>
__global__ void table_lookup_kernel(const id_t* ids, int64_t HW, int64_t ignore_index,
                                    int64_t slots, const unsigned long long* keys,
                                    const int32_t* first, int32_t* slot_of, int32_t* is_first) {
  const int64_t b = blockIdx.y;
  const BlockRange r = block_range(HW);
  for (int64_t p = r.begin + threadIdx.x; p < r.end; p += blockDim.x) {
    const long long id = ids[b * HW + p];
    int32_t h = -1;
    if (id != ignore_index) {
      h = static_cast<int32_t>(
          table_find(keys + b * slots, slots - 1, static_cast<unsigned long long>(id)));
    }
    slot_of[b * HW + p] = h;
    is_first[b * HW + p] = h >= 0 && first[b * slots + h] == p;
  }
}

// labels = (inclusive scan of is_first at the id's first pixel) - 1; offsets[b] = the scan just
// before image b (thread b <= B of the first block).
__global__ void table_labels_kernel(const int32_t* slot_of, const int32_t* first,
                                    const int32_t* scan, int64_t B, int64_t HW, int64_t slots,
                                    int32_t* labels, int64_t* offsets) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i <= B) offsets[i] = i == 0 ? 0 : scan[i * HW - 1];
  if (i >= B * HW) return;
  const int64_t b = i / HW;
  const int32_t h = slot_of[i];
  labels[i] = h < 0 ? -1 : scan[b * HW + first[b * slots + h]] - 1;
}

}  // namespace

void relabel_cuda(const at::Tensor& ids, int64_t ignore_index, at::Tensor& labels,
                  at::Tensor& offsets) {
  const int64_t B = ids.size(0), HW = ids.size(1) * ids.size(2);
  const auto stream = at::cuda::getCurrentCUDAStream();
  if (B == 0 || HW == 0) {
    labels.fill_(-1);
    offsets.zero_();
    return;
  }
  int64_t slots = 1;
  while (slots < 2 * HW) slots *= 2;
  const auto i32 = ids.options().dtype(at::kInt);
  at::Tensor keys = at::empty({B * slots}, ids.options().dtype(at::kLong));
  at::Tensor first = at::empty({B * slots}, i32);
  const auto empty = static_cast<unsigned long long>(ignore_index);
  auto* keys_ptr = reinterpret_cast<unsigned long long*>(keys.data_ptr<int64_t>());
  const int64_t clear_blocks = std::min<int64_t>(
      ceil_div(B * slots, kThreads),
      int64_t(8) * at::cuda::getCurrentDeviceProperties()->multiProcessorCount);
  table_clear_kernel<<<clear_blocks, kThreads, 0, stream>>>(keys_ptr, first.data_ptr<int32_t>(),
                                                            B * slots, empty);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const dim3 grid(blocks_per_image(B, HW), B);
  at::Tensor slot_of = at::empty({B * HW}, i32);
  at::Tensor is_first = at::empty({B * HW}, i32);
  AT_DISPATCH_INDEX_TYPES(ids.scalar_type(), "discriminative_loss_relabel", [&] {
    table_insert_kernel<index_t><<<grid, kThreads, 0, stream>>>(
        ids.data_ptr<index_t>(), HW, ignore_index, slots, keys_ptr, first.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    table_lookup_kernel<index_t><<<grid, kThreads, 0, stream>>>(
        ids.data_ptr<index_t>(), HW, ignore_index, slots, keys_ptr, first.data_ptr<int32_t>(),
        slot_of.data_ptr<int32_t>(), is_first.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const at::Tensor scan = at::cumsum(is_first, 0, at::kInt);
  table_labels_kernel<<<ceil_div(std::max(B * HW, B + 1), kThreads), kThreads, 0, stream>>>(
      slot_of.data_ptr<int32_t>(), first.data_ptr<int32_t>(), scan.data_ptr<int32_t>(), B, HW,
      slots, labels.data_ptr<int32_t>(), offsets.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace panonet::ops::loss_cuda
