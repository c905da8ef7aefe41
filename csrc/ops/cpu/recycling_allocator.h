// A std::vector allocator that keeps large blocks for the next call on the same thread, and
// leaves new elements uninitialised.
//
// Why: glibc serves every allocation above its mmap threshold with a fresh mapping and returns
// it on free, so each mean_shift call paid the page faults of its ~40 MB of scratch arrays again.
// The arrays are fully written before
// they are read, so zero-filling them on resize() was wasted work too.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

namespace panonet::ms {

// Per-thread cache of freed blocks of at least kMinBytes, holding at most kMaxHeldBytes.
class BlockCache {
 public:
  static constexpr std::size_t kMinBytes = std::size_t{1} << 16;
  static constexpr std::size_t kMaxHeldBytes = std::size_t{1} << 28;

  static BlockCache& local() {
    thread_local BlockCache cache;
    return cache;
  }

  void* get(std::size_t bytes) {
    if (bytes >= kMinBytes) {
      // Smallest cached block that fits without wasting more than half of it.
      std::size_t best = blocks_.size();
      for (std::size_t i = 0; i < blocks_.size(); ++i) {
        const std::size_t size = blocks_[i].second;
        if (size >= bytes && size <= 2 * bytes &&
            (best == blocks_.size() || size < blocks_[best].second)) {
          best = i;
        }
      }
      if (best < blocks_.size()) {
        void* p = blocks_[best].first;
        held_ -= blocks_[best].second;
        blocks_[best] = blocks_.back();
        blocks_.pop_back();
        return p;
      }
    }
    void* p = std::malloc(bytes == 0 ? 1 : bytes);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }

  // `bytes` must be the size the block was requested with (blocks are reused only for requests
  // no larger than that).
  void put(void* p, std::size_t bytes) {
    if (bytes < kMinBytes || bytes > kMaxHeldBytes) {
      std::free(p);
      return;
    }
    while (!blocks_.empty() && held_ + bytes > kMaxHeldBytes) {
      std::free(blocks_.front().first);
      held_ -= blocks_.front().second;
      blocks_.erase(blocks_.begin());
    }
    blocks_.emplace_back(p, bytes);
    held_ += bytes;
  }

  ~BlockCache() {
    for (auto& [p, size] : blocks_) std::free(p);
  }

 private:
  std::vector<std::pair<void*, std::size_t>> blocks_;
  std::size_t held_ = 0;
};

template <typename T>
struct RecyclingAllocator {
  using value_type = T;
  RecyclingAllocator() = default;
  template <typename U>
  RecyclingAllocator(const RecyclingAllocator<U>&) {}

  T* allocate(std::size_t n) { return static_cast<T*>(BlockCache::local().get(n * sizeof(T))); }
  // The block may be cached by another thread than the one that allocated it; it is plain
  // malloc memory either way.
  void deallocate(T* p, std::size_t n) { BlockCache::local().put(p, n * sizeof(T)); }

  // Default-initialise (no zero fill) when constructed without arguments.
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }

  template <typename U>
  bool operator==(const RecyclingAllocator<U>&) const {
    return true;
  }
  template <typename U>
  bool operator!=(const RecyclingAllocator<U>&) const {
    return false;
  }
};

// A vector whose storage is recycled and whose resize() leaves new elements uninitialised.
template <typename T>
using RecycledVector = std::vector<T, RecyclingAllocator<T>>;

}  // namespace panonet::ms
