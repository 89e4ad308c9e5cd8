#pragma once
// Hands values on in the order they were pushed, while some of them are still being made on
// other threads (the GPU analysis: a kept head's arrays are copied back and assembled on a
// thread of their own, analysis/gpu/analyze_gpu.cu). A value pushed ready waits behind any
// earlier pending one without blocking the caller, who goes on enqueueing the next head's work
// on the device; it is handed on as soon as everything before it has been.
//
// At most one value is pending at a time: pushing a second pending value first waits for the
// first (and hands on everything before it), so what the pending ones hold (a kept head's
// device copies) stays bounded. finish() waits for everything and hands it all on; the
// destructor waits for the pending values (std::async's futures do) without handing them on.
// An exception from a pending value, or from the sink, reaches the caller of push, poll or
// finish that met it; that value is dropped, and the values after it stay queued (a later
// poll or finish hands them on).
#include <chrono>
#include <deque>
#include <functional>
#include <future>
#include <optional>
#include <utility>

namespace moba::analysis {

template <typename T>
class OrderedHandOff {
 public:
  explicit OrderedHandOff(std::function<void(T&)> sink) : sink_(std::move(sink)) {}
  OrderedHandOff(const OrderedHandOff&) = delete;
  OrderedHandOff& operator=(const OrderedHandOff&) = delete;

  // A value ready now.
  void push(T value) {
    Entry e;
    e.ready.emplace(std::move(value));
    queue_.push_back(std::move(e));
    poll();
  }
  // A value being made elsewhere.
  void push(std::future<T> pending) {
    drain(true);  // at most one pending value
    Entry e;
    e.pending = std::move(pending);
    queue_.push_back(std::move(e));
    poll();
  }
  // Hands on, without waiting, the values at the front that are ready.
  void poll() { drain(false); }
  // Waits for every value and hands them all on.
  void finish() { drain(true); }
  // Values pushed but not yet handed on.
  size_t waiting() const { return queue_.size(); }

 private:
  struct Entry {
    std::optional<T> ready;
    std::future<T> pending;
  };
  // Hands on the front values while they are ready; with `wait`, waits for pending ones.
  void drain(bool wait) {
    while (!queue_.empty()) {
      Entry& e = queue_.front();
      if (!e.ready && !wait && e.pending.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return;
      std::optional<T> ready = std::move(e.ready);
      std::future<T> pending = std::move(e.pending);
      queue_.pop_front();  // before get() or the sink may throw
      T value = ready ? std::move(*ready) : pending.get();
      sink_(value);
    }
  }
  std::function<void(T&)> sink_;
  std::deque<Entry> queue_;
};

}  // namespace moba::analysis
