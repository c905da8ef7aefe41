#include "center_index.h"

#include "mean_shift.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace panonet::ms {
namespace {

// Centers per leaf: few enough that a leaf scan is cheap, enough that the tree stays shallow.
constexpr int64_t kLeafCenters = 32;

}  // namespace

CenterIndex::CenterIndex(const double* centers, int64_t K, int64_t D)
    : D_(D), index_(K) {
  std::iota(index_.begin(), index_.end(), 0);
  if (K == 0) return;
  src_ = centers;
  nodes_.reserve(2 * (K / kLeafCenters + 1));
  build(0, K);
  rows_.resize(K * D);
  for (int64_t j = 0; j < K; ++j) std::copy_n(centers + index_[j] * D, D, rows_.data() + j * D);
}

int64_t CenterIndex::build(int64_t begin, int64_t end) {
  const int64_t D = D_;
  const int64_t id = static_cast<int64_t>(nodes_.size());
  nodes_.push_back({begin, end, -1, -1, 0});
  lo_.resize((id + 1) * D);
  hi_.resize((id + 1) * D);
  if (end - begin <= kLeafCenters) {
    int64_t max_index = 0;
    for (int64_t d = 0; d < D; ++d) {
      lo_[id * D + d] = INFINITY;
      hi_[id * D + d] = -INFINITY;
    }
    for (int64_t j = begin; j < end; ++j) {
      max_index = std::max(max_index, index_[j]);
      for (int64_t d = 0; d < D; ++d) {
        lo_[id * D + d] = std::min(lo_[id * D + d], src_[index_[j] * D + d]);
        hi_[id * D + d] = std::max(hi_[id * D + d], src_[index_[j] * D + d]);
      }
    }
    nodes_[id].max_index = max_index;
    return id;
  }
  // Split the widest spread at the median (spread from a sample: the exact box comes later).
  int64_t axis = 0;
  double widest = -1;
  const int64_t step = std::max<int64_t>(1, (end - begin) / 64);
  for (int64_t d = 0; d < D; ++d) {
    double mn = INFINITY, mx = -INFINITY;
    for (int64_t j = begin; j < end; j += step) {
      mn = std::min(mn, src_[index_[j] * D + d]);
      mx = std::max(mx, src_[index_[j] * D + d]);
    }
    if (mx - mn > widest) {
      widest = mx - mn;
      axis = d;
    }
  }
  const int64_t mid = begin + (end - begin) / 2;
  keys_.resize(end - begin);
  for (int64_t j = begin; j < end; ++j) keys_[j - begin] = {src_[index_[j] * D + axis], index_[j]};
  std::nth_element(keys_.begin(), keys_.begin() + (mid - begin), keys_.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (int64_t j = begin; j < end; ++j) index_[j] = keys_[j - begin].second;
  const int64_t left = build(begin, mid);
  const int64_t right = build(mid, end);
  nodes_[id].left = left;
  nodes_[id].right = right;
  nodes_[id].max_index = std::max(nodes_[left].max_index, nodes_[right].max_index);
  for (int64_t d = 0; d < D; ++d) {
    lo_[id * D + d] = std::min(lo_[left * D + d], lo_[right * D + d]);
    hi_[id * D + d] = std::max(hi_[left * D + d], hi_[right * D + d]);
  }
  return id;
}

double CenterIndex::box_sq_dist(int64_t node, const double* q) const {
  const double* lo = lo_.data() + node * D_;
  const double* hi = hi_.data() + node * D_;
  double s = 0;
  for (int64_t d = 0; d < D_; ++d) {
    const double gap = interval_gap(q[d], lo[d], hi[d]);
    s += gap * gap;
  }
  return s;
}

int64_t CenterIndex::nearest(const double* q, double* d2) const {
  double unused;
  return search(q, d2, &unused, false);
}

int64_t CenterIndex::nearest2(const double* q, double* d2, double* second_d2) const {
  return search(q, d2, second_d2, true);
}

int64_t CenterIndex::search(const double* q, double* d2, double* second_d2, bool two) const {
  int64_t best = -1;
  double best_d2 = INFINITY, second = INFINITY;
  // Nodes still to visit with the lower bound of their distance, nearer child on top.
  std::pair<int64_t, double> stack[128];
  int top = 0;
  stack[top++] = {0, box_sq_dist(0, q)};
  while (top > 0) {
    const auto [id, bound] = stack[--top];
    // A box at exactly the bound may still hold a tie of lower index.
    const double limit = two ? second : best_d2;
    if (best >= 0 && bound > limit) continue;
    const Node& node = nodes_[id];
    if (node.left >= 0) {
      const double bl = box_sq_dist(node.left, q), br = box_sq_dist(node.right, q);
      if (bl <= br) {
        stack[top++] = {node.right, br};
        stack[top++] = {node.left, bl};
      } else {
        stack[top++] = {node.left, bl};
        stack[top++] = {node.right, br};
      }
      continue;
    }
    for (int64_t j = node.begin; j < node.end; ++j) {
      const int64_t k = index_[j];
      const double s = sq_dist_to(q, j);
      if (best < 0 || s < best_d2 || (s == best_d2 && k < best)) {
        if (best >= 0) second = std::min(second, best_d2);
        best = k;
        best_d2 = s;
      } else {
        second = std::min(second, s);
      }
    }
  }
  *d2 = best_d2;
  *second_d2 = second;
  return best;
}

}  // namespace panonet::ms
