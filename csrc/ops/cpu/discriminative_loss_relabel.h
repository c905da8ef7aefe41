// The relabelling pass of the CPU discriminative loss: each image's distinct ids, sorted, become
// its clusters. Included by discriminative_loss.cpp only.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../ceil_div.h"

namespace panonet::ops {
namespace {

// Pixels per relabel task.
constexpr int64_t kChunk = 1 << 16;

// An open-addressing map from ids to int32 values. `ignore` marks an empty slot, whose value is
// -1, so that looking up `ignore` yields -1 without a branch of its own. A per-pixel hash lookup:
// an instance map whose ids are not spatially coherent (few ids, but rarely the same twice in a
// row) defeats the "same id as the last pixel" shortcut, and a std::unordered_set or a binary
// search at almost every pixel made such maps 3-4x slower than coherent ones.
class IdTable {
 public:
  explicit IdTable(int64_t ignore) : ignore_(ignore) { reset(16); }

  // The slot holding id, or the empty slot where it would go.
  size_t find(int64_t id) const {
    size_t h = (static_cast<uint64_t>(id) * 0x9e3779b97f4a7c15ULL) >> shift_;
    while (keys_[h] != id && keys_[h] != ignore_) h = (h + 1) & mask_;
    return h;
  }
  int32_t value(size_t slot) const { return values_[slot]; }
  // Adds id (not `ignore`, not present) with a value.
  void insert(int64_t id, int32_t value) {
    if (2 * (size_ + 1) > keys_.size()) {
      const std::vector<int64_t> keys = std::move(keys_);
      const std::vector<int32_t> values = std::move(values_);
      reset(2 * keys.size());
      for (size_t i = 0; i < keys.size(); ++i) {
        if (keys[i] != ignore_) place(keys[i], values[i]);
      }
    }
    place(id, value);
  }
  // The ids held, in no particular order.
  std::vector<int64_t> ids() const {
    std::vector<int64_t> out;
    for (const int64_t k : keys_) {
      if (k != ignore_) out.push_back(k);
    }
    return out;
  }

 private:
  void reset(size_t slots) {
    keys_.assign(slots, ignore_);
    values_.assign(slots, -1);
    mask_ = slots - 1;
    shift_ = 64 - __builtin_ctzll(slots);
    size_ = 0;
  }
  void place(int64_t id, int32_t value) {
    const size_t h = find(id);
    keys_[h] = id;
    values_[h] = value;
    ++size_;
  }

  int64_t ignore_;
  std::vector<int64_t> keys_;
  std::vector<int32_t> values_;
  size_t mask_ = 0;
  int shift_ = 0;
  size_t size_ = 0;
};

// Sorted distinct ids per image become clusters; labels[b, p] = offsets[b] + rank of the id of
// pixel p among the distinct ids of image b, or -1 where the id is `ignore_index`.
template <typename id_t>
std::vector<int64_t> relabel(const id_t* ids, int64_t B, int64_t HW, int64_t ignore_index,
                             int32_t* labels) {
  const int64_t per_image = std::max<int64_t>(1, ceil_div(HW, kChunk));
  const int64_t tasks = B * per_image;
  std::vector<std::vector<int64_t>> found(tasks);
  at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const id_t* row = ids + (t / per_image) * HW;
      const int64_t p1 = std::min(HW, (t % per_image + 1) * kChunk);
      IdTable seen(ignore_index);
      for (int64_t p = (t % per_image) * kChunk; p < p1; ++p) {
        const int64_t id = row[p];
        // The insertion is rare, so its branch is predictable; ignore_index "finds" -1.
        if (seen.value(seen.find(id)) < 0 && id != ignore_index) seen.insert(id, 0);
      }
      found[t] = seen.ids();
    }
  });

  std::vector<std::vector<int64_t>> distinct(B);
  std::vector<int64_t> offsets(B + 1, 0);
  for (int64_t b = 0; b < B; ++b) {
    auto& u = distinct[b];
    for (int64_t t = b * per_image; t < (b + 1) * per_image; ++t) {
      u.insert(u.end(), found[t].begin(), found[t].end());
    }
    std::sort(u.begin(), u.end());
    u.erase(std::unique(u.begin(), u.end()), u.end());
    offsets[b + 1] = offsets[b] + static_cast<int64_t>(u.size());
  }
  std::vector<IdTable> label_of;
  for (int64_t b = 0; b < B; ++b) {
    label_of.emplace_back(ignore_index);
    for (size_t i = 0; i < distinct[b].size(); ++i) {
      label_of[b].insert(distinct[b][i], static_cast<int32_t>(offsets[b] + int64_t(i)));
    }
  }

  at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / per_image;
      const id_t* row = ids + b * HW;
      int32_t* out = labels + b * HW;
      const int64_t p1 = std::min(HW, (t % per_image + 1) * kChunk);
      for (int64_t p = (t % per_image) * kChunk; p < p1; ++p) {
        out[p] = label_of[b].value(label_of[b].find(row[p]));  // -1 for ignore_index
      }
    }
  });
  return offsets;
}

}  // namespace
}  // namespace panonet::ops
