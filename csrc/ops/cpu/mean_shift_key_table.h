// The seeding bins of the CPU mean-shift: bin keys hashed into an open-addressing table, bins in
// order of first appearance.
// Part of the CPU mean-shift core: included by mean_shift_core.cpp only, inside the namespace of
// the instruction set it is compiled for (baseline or AVX2, see mean_shift_core_avx2.cpp).
#pragma once

#include <ATen/Parallel.h>

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "../hash.h"
#include "../mean_shift.h"
#include "mean_shift_isa.h"
#include "recycling_allocator.h"

namespace panonet::ms::PANONET_MS_ISA {
namespace {

uint64_t hash_doubles(const double* v, int64_t D) {
  uint64_t h = 0;
  for (int64_t d = 0; d < D; ++d) {
    const double x = v[d] == 0.0 ? 0.0 : v[d];  // -0 and +0 are one key
    uint64_t bits;
    std::memcpy(&bits, &x, sizeof(bits));
    h += bits * (0x9e3779b97f4a7c15ULL + 2 * static_cast<uint64_t>(d));
  }
  return mix64(h);
}

// Open-addressing map from D-double keys to dense ids in order of first insertion.
class KeyTable {
 public:
  // Starts small and doubles at half load: there are usually far fewer bins than points, and
  // a table sized for the points (MBs) made every probe a cache miss.
  explicit KeyTable(int64_t D) : D_(D) { slots_.assign(1024, -1); }

  // Id of key (inserting it if new) and whether it was new.
  std::pair<int64_t, bool> insert(const double* key, uint64_t hash) {
    const uint64_t mask = slots_.size() - 1;
    for (uint64_t i = hash & mask;; i = (i + 1) & mask) {
      const int64_t id = slots_[i];
      if (id < 0) {
        const int64_t fresh = size();
        slots_[i] = fresh;
        keys_.insert(keys_.end(), key, key + D_);
        hashes_.push_back(hash);
        if (2 * (fresh + 1) > static_cast<int64_t>(slots_.size())) grow();
        return {fresh, true};
      }
      // Bin keys are canonical (integral or infinite, never -0 or NaN), so equal keys are
      // equal bytes; memcmp is vectorized, the element loop was not.
      if (hashes_[id] == hash &&
          std::memcmp(keys_.data() + id * D_, key, D_ * sizeof(double)) == 0) {
        return {id, false};
      }
    }
  }

  const double* key(int64_t id) const { return keys_.data() + id * D_; }
  int64_t size() const { return static_cast<int64_t>(keys_.size() / D_); }

 private:
  void grow() {
    slots_.assign(2 * slots_.size(), -1);
    const uint64_t mask = slots_.size() - 1;
    for (int64_t id = 0; id < size(); ++id) {
      uint64_t i = hashes_[id] & mask;
      while (slots_[i] >= 0) i = (i + 1) & mask;
      slots_[i] = id;
    }
  }

  int64_t D_;
  std::vector<int64_t> slots_;
  std::vector<double> keys_;
  std::vector<uint64_t> hashes_;
};

// Bins of size `bandwidth`, in order of first appearance: bin id per point and count per bin.
struct Bins {
  RecycledVector<int64_t> of_point;
  std::vector<int64_t> count;
  KeyTable table;
};

Bins make_bins(const double* points, int64_t n, int64_t D, double bandwidth) {
  RecycledVector<double> keys(n * D);
  RecycledVector<uint64_t> hashes(n);
  at::parallel_for(0, n, 2048, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      double* k = keys.data() + i * D;
      for (int64_t d = 0; d < D; ++d) k[d] = bin_key(points[i * D + d], bandwidth);
      hashes[i] = hash_doubles(k, D);
    }
  });
  Bins bins{RecycledVector<int64_t>(n), {}, KeyTable(D)};
  for (int64_t i = 0; i < n; ++i) {
    const auto [id, fresh] = bins.table.insert(keys.data() + i * D, hashes[i]);
    if (fresh) bins.count.push_back(0);
    bins.of_point[i] = id;
    ++bins.count[id];
  }
  return bins;
}

}  // namespace
}  // namespace panonet::ms::PANONET_MS_ISA
