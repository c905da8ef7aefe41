// A k-d tree over mean-shift centers (host code), so that suppressing centers and labelling
// points cost O(K log K) and O(N log K) instead of O(K^2) and O(N K): an untrained embedding
// puts every pixel in its own cluster (131k centers per 2048x1024 frame).
//
// Exactness: a node is pruned only when the lower bound of the squared distance from the query
// to its bounding box exceeds the threshold. That bound is the same sum, in the same order
// d = 0..D-1, as sq_dist, with every |x_d - q_d| replaced by the gap between q_d and the box,
// which is no larger; rounding to nearest is monotone, so the bound computed in floating point
// is <= the floating-point sq_dist of every point in the box (no slack needed; the file is
// compiled without FMA contraction). Every decision therefore equals the one of a scan over all
// centers with sq_dist.
#pragma once

#include <cstdint>
#include <vector>

#include "mean_shift.h"

namespace panonet::ms {

class CenterIndex {
 public:
  // centers: K x D row-major (copied).
  CenterIndex(const double* centers, int64_t K, int64_t D);

  // Calls fn(k) for every center k > after with sq_dist(q, center k) <= r2, in no fixed order.
  template <typename F>
  void for_each_within(const double* q, double r2, int64_t after, const F& fn) const;

  // Nearest center: smallest sq_dist, then smallest index. *d2 receives its squared distance.
  // K must be > 0.
  int64_t nearest(const double* q, double* d2) const;

  // Nearest center as above and the smallest squared distance to any other center (INFINITY
  // when K == 1).
  int64_t nearest2(const double* q, double* d2, double* second_d2) const;

 private:
  struct Node {
    int64_t begin, end;   // range of tree positions
    int64_t left, right;  // children, -1 for a leaf
    int64_t max_index;    // largest center index in the node
  };
  int64_t build(int64_t begin, int64_t end);
  double box_sq_dist(int64_t node, const double* q) const;
  int64_t search(const double* q, double* d2, double* second_d2, bool two) const;
  // sq_dist (mean_shift.h) from q to the center at tree position j.
  double sq_dist_to(const double* q, int64_t j) const {
    return sq_dist(q, rows_.data() + j * D_, D_);
  }

  int64_t D_;
  std::vector<int64_t> index_;  // tree position -> center index
  std::vector<double> rows_;    // K x D: the centers in tree order
  std::vector<Node> nodes_;
  std::vector<double> lo_, hi_;  // nodes x D bounding boxes
  // Build state: the centers as given, and (split key, center index) pairs.
  const double* src_ = nullptr;
  std::vector<std::pair<double, int64_t>> keys_;
};

template <typename F>
void CenterIndex::for_each_within(const double* q, double r2, int64_t after, const F& fn) const {
  if (nodes_.empty()) return;
  int64_t stack[128];
  int top = 0;
  stack[top++] = 0;
  while (top > 0) {
    const int64_t id = stack[--top];
    const Node& node = nodes_[id];
    if (node.max_index <= after) continue;
    if (box_sq_dist(id, q) > r2) continue;
    if (node.left >= 0) {
      stack[top++] = node.right;
      stack[top++] = node.left;
      continue;
    }
    for (int64_t j = node.begin; j < node.end; ++j) {
      const int64_t k = index_[j];
      if (k > after && sq_dist_to(q, j) <= r2) fn(k);
    }
  }
}

}  // namespace panonet::ms
