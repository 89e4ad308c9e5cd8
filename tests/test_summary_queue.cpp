// analysis::SummaryQueue (analysis/analyze.h): the GPU-resident analysis' two-thread summary
// queue — commits run in push order after their compute parts, markers wait for what was
// queued before them, and a failure stops the queue and is rethrown.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

#include "analysis/analyze.h"
#include "analysis/ordered_handoff.h"

using moba::analysis::OrderedHandOff;
using moba::analysis::SummaryQueue;

TEST_CASE("summary queue: commits in push order, markers after what came before", "[analysis]") {
  SummaryQueue q;
  std::vector<int> order;  // written by the commit thread only; read after drain()
  std::atomic<int> computed{0}, committed{0};
  std::vector<std::shared_future<void>> marks;
  for (int i = 0; i < 40; ++i) {
    q.push([i, &order, &computed, &committed]() -> SummaryQueue::Commit {
      // Early jobs compute slowly: later computes finish first, commits must still be ordered.
      if (i % 7 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(3));
      ++computed;
      return [i, &order, &committed] {
        order.push_back(i);
        ++committed;
      };
    });
    if (i % 10 == 9) marks.push_back(q.mark());
  }
  for (size_t m = 0; m < marks.size(); ++m) {
    q.wait(marks[m]);
    REQUIRE(committed >= static_cast<int>(10 * (m + 1)));  // every job before the marker has committed
  }
  q.drain();
  REQUIRE(computed == 40);
  REQUIRE(order.size() == 40);
  for (int i = 0; i < 40; ++i) REQUIRE(order[static_cast<size_t>(i)] == i);
}

TEST_CASE("summary queue: a failure drops later jobs, markers still fire, wait rethrows", "[analysis]") {
  for (const bool in_commit : {false, true}) {
    SummaryQueue q;
    std::atomic<int> committed{0};
    q.push([&]() -> SummaryQueue::Commit { return [&] { ++committed; }; });  // before the failure: commits
    q.push([in_commit]() -> SummaryQueue::Commit {
      if (!in_commit) throw std::runtime_error("rows failed");
      return [] { throw std::runtime_error("write failed"); };
    });
    // After the failure: dropped, or refused at push once the failure is known.
    try {
      q.push([&]() -> SummaryQueue::Commit { return [&] { committed += 100; }; });
    } catch (const std::runtime_error&) {
    }
    const auto m = q.mark();
    REQUIRE_THROWS_AS(q.wait(m), std::runtime_error);
    REQUIRE(committed == 1);
    REQUIRE_THROWS_AS(q.push([]() -> SummaryQueue::Commit { return [] {}; }), std::runtime_error);
    REQUIRE_THROWS_AS(q.drain(), std::runtime_error);
  }
}

TEST_CASE("ordered hand-off: ready values wait behind a pending one without blocking", "[analysis]") {
  std::vector<int> out;
  OrderedHandOff<int> h([&](int& v) { out.push_back(v); });
  h.push(0);
  CHECK(out == std::vector<int>{0});  // nothing before it: handed on at once
  std::promise<int> p1;
  h.push(p1.get_future());
  h.push(2);
  h.push(3);  // returns at once: 1 is not made yet
  CHECK(out == std::vector<int>{0});
  CHECK(h.waiting() == 3);
  h.poll();
  CHECK(out == std::vector<int>{0});
  p1.set_value(1);
  h.poll();
  CHECK(out == std::vector<int>{0, 1, 2, 3});
  // A second pending value waits for the first (at most one pending).
  std::promise<int> p4;
  h.push(p4.get_future());
  h.push(5);
  std::thread maker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    p4.set_value(4);
  });
  auto f6 = std::async(std::launch::async, [] { return 6; });
  h.push(std::move(f6));  // waits for 4, hands on 4 and 5
  maker.join();
  CHECK((out.size() >= 6 && out[4] == 4 && out[5] == 5));
  h.push(7);
  h.finish();
  CHECK(out == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK(h.waiting() == 0);
}

TEST_CASE("ordered hand-off: a failed pending value stops at itself", "[analysis]") {
  std::vector<int> out;
  OrderedHandOff<int> h([&](int& v) { out.push_back(v); });
  std::promise<int> failing;
  h.push(failing.get_future());
  h.push(1);
  failing.set_exception(std::make_exception_ptr(std::runtime_error("assembly failed")));  // after the pushes
  CHECK_THROWS_WITH(h.finish(), "assembly failed");
  CHECK(out.empty());
  h.finish();  // what came after it is still there
  CHECK(out == std::vector<int>{1});
}
