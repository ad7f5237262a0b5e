// The one oneDNN CPU engine every oneDNN primitive of the process runs on, and the cache that
// builds each primitive once.
#pragma once
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>

namespace ikv::kernels {

dnnl::engine& onednn_engine();

// Objects built once per key and kept for the process: creating a oneDNN primitive JIT-compiles
// its kernel (~0.1-1 ms), far too slow to repeat per call. Thread-safe; references stay valid.
template <typename Key, typename Value>
class PrimitiveCache {
 public:
  template <typename Make>
  const Value& get(const Key& key, Make&& make) {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = map_.find(key); it != map_.end()) return it->second;
    return map_.emplace(key, make()).first->second;
  }

 private:
  std::mutex mu_;
  std::map<Key, Value> map_;
};

}  // namespace ikv::kernels
