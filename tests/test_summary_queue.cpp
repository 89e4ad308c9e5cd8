// analysis::SummaryQueue (analysis/analyze.h): the GPU-resident analysis' two-thread summary
// queue — commits run in push order after their compute parts, markers wait for what was
// queued before them, and a failure stops the queue and is rethrown.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "analysis/analyze.h"

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

// The queue's behaviour the GPU analysis relies on (analysis/analyze.cpp): a kept head is pushed
// as a job whose compute waits for its future (its arrays assembled on another thread), the
// heads after it as jobs whose futures are ready; pushing does not wait for the pending job.
TEST_CASE("summary queue: a job waiting on a pending future holds later commits, not the pusher", "[analysis]") {
  SummaryQueue q;
  std::vector<int> order;  // commit thread only; read after drain()
  const auto push_future = [&](std::shared_ptr<std::future<int>> f) {
    q.push([f, &order]() -> SummaryQueue::Commit {
      const int v = f->get();
      return [v, &order] { order.push_back(v); };
    });
  };
  std::promise<int> p0;
  push_future(std::make_shared<std::future<int>>(p0.get_future()));
  for (int i = 1; i < 4; ++i) {
    std::promise<int> ready;
    ready.set_value(i);
    push_future(std::make_shared<std::future<int>>(ready.get_future()));
  }
  const auto m = q.mark();  // pushed while job 0 still waits
  CHECK(m.wait_for(std::chrono::milliseconds(20)) == std::future_status::timeout);
  p0.set_value(0);
  q.wait(m);
  CHECK(order == std::vector<int>{0, 1, 2, 3});

  // A failed future: the commits before it stand, it and the jobs after it are dropped.
  SummaryQueue failing;
  std::atomic<int> committed{0};
  failing.push([&]() -> SummaryQueue::Commit { return [&] { ++committed; }; });
  std::promise<int> bad;
  auto fb = std::make_shared<std::future<int>>(bad.get_future());
  failing.push([fb, &committed]() -> SummaryQueue::Commit {
    fb->get();
    return [&committed] { committed += 10; };
  });
  failing.push([&]() -> SummaryQueue::Commit { return [&] { committed += 100; }; });
  bad.set_exception(std::make_exception_ptr(std::runtime_error("assembly failed")));
  CHECK_THROWS_WITH(failing.drain(), "assembly failed");
  CHECK(committed == 1);
}
