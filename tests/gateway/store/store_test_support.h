// Test doubles for the store: a `post` that queues closures for the test thread to run (as the
// loop would), a temporary data_dir, and a raw SQLite reader to look at what was written.
#pragma once

#include "base/error.h"
#include "gateway/store/sqlite_queue_store.h"

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <functional>
#include <gtest/gtest.h>
#include <mutex>
#include <optional>
#include <sqlite3.h>
#include <string>
#include <thread>
#include <vector>

namespace mailgate::store::testing {

// Plays the loop: post() may be called from any thread; closures run only when the test thread
// calls run*(). Records that every closure ran on the thread that created the queue.
class PostQueue {
public:
  PostFn fn() {
    return [this](std::function<void()> f) { push(std::move(f)); };
  }

  void push(std::function<void()> f) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(f));
      ++posted_;
    }
    cv_.notify_all();
  }

  // Runs closures as they arrive until `done()` holds. The deadline only turns a hang into a
  // failure; nothing is asserted about time.
  bool runUntil(const std::function<bool()>& done,
                std::chrono::seconds deadline = std::chrono::seconds(60)) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (!done()) {
      std::function<void()> f;
      {
        std::unique_lock lock(mu_);
        if (!cv_.wait_until(lock, until, [&] { return !queue_.empty(); })) {
          return false;
        }
        f = std::move(queue_.front());
        queue_.pop_front();
      }
      f();
    }
    return true;
  }

  // Runs what is queued now (and what those closures post), without waiting.
  size_t runPending() {
    size_t n = 0;
    for (;;) {
      std::function<void()> f;
      {
        std::lock_guard lock(mu_);
        if (queue_.empty()) {
          return n;
        }
        f = std::move(queue_.front());
        queue_.pop_front();
      }
      f();
      ++n;
    }
  }

  // Blocks until at least `n` closures were posted in total (without running them).
  bool waitPosted(size_t n, std::chrono::seconds deadline = std::chrono::seconds(60)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, deadline, [&] { return posted_ >= n; });
  }

  size_t posted() const {
    std::lock_guard lock(mu_);
    return posted_;
  }

  std::thread::id owner() const { return owner_; }

private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  size_t posted_ = 0;
  std::thread::id owner_ = std::this_thread::get_id();
};

// Calls an asynchronous store method and runs the post queue until its completion arrives.
// Fails the test if the completion runs on any thread but the test's.
template <typename T, typename Call> Result<T> await(PostQueue& q, Call call) {
  std::optional<Result<T>> out;
  call([&](Result<T> r) {
    EXPECT_EQ(std::this_thread::get_id(), q.owner()) << "completion ran off the loop thread";
    out.emplace(std::move(r));
  });
  EXPECT_TRUE(q.runUntil([&] { return out.has_value(); })) << "completion never arrived";
  if (!out) {
    return fail("test.timeout", "completion never arrived");
  }
  return std::move(*out);
}

class TempDir {
public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "mailgate-store-XXXXXX").string();
    if (mkdtemp(tmpl.data()) != nullptr) {
      path_ = tmpl;
    }
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

private:
  std::string path_;
};

// A second, independent connection to the same file, like an operator's sqlite3 shell.
class RawDb {
public:
  explicit RawDb(const std::string& file) {
    sqlite3* db = nullptr;
    sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
    db_.reset(db);
    sqlite3_busy_timeout(db, 5000);
  }

  // Every row of `sql`, each column as text ("" for NULL).
  std::vector<std::vector<std::string>> rows(const std::string& sql) {
    std::vector<std::vector<std::string>> out;
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << "bad test SQL: " << sqlite3_errmsg(db_.get()) << ": " << sql;
      return out;
    }
    std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)> stmt(raw, &sqlite3_finalize);
    int rc = 0;
    while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int i = 0; i < sqlite3_column_count(raw); ++i) {
        const auto* t = sqlite3_column_text(raw, i);
        row.emplace_back(t == nullptr ? "" : reinterpret_cast<const char*>(t));
      }
      out.push_back(std::move(row));
    }
    EXPECT_EQ(rc, SQLITE_DONE) << sqlite3_errmsg(db_.get());
    return out;
  }

  std::string scalar(const std::string& sql) {
    auto r = rows(sql);
    return r.empty() || r[0].empty() ? std::string() : r[0][0];
  }

  int exec(const std::string& sql) {
    return sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, nullptr);
  }

private:
  std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db_{nullptr, &sqlite3_close};
};

constexpr int64_t kT0 = 1'790'000'000'000; // 2026-09-21T14:13:20Z
constexpr int64_t kMinute = 60'000;
constexpr int64_t kDay = 86'400'000;

// A store in a temporary data_dir whose completions run on the test thread, and the calls the
// store tests make, each awaited.
class StoreFixture : public ::testing::Test {
protected:
  std::unique_ptr<SqliteQueueStore> open(SqliteStoreOptions o = {}) {
    o.data_dir = dir_.path();
    o.post = q_.fn();
    auto s = openSqliteQueueStore(std::move(o));
    EXPECT_TRUE(s.has_value()) << (s ? "" : s.error().describe());
    return s ? std::move(*s) : nullptr;
  }

  Result<std::string> enqueue(SqliteQueueStore& s, relay::NewMessage m) {
    return await<std::string>(q_, [&](auto done) { s.enqueue(std::move(m), done); });
  }
  std::string enqueueOk(SqliteQueueStore& s, relay::NewMessage m) {
    auto id = enqueue(s, std::move(m));
    EXPECT_TRUE(id.has_value()) << (id ? "" : id.error().describe());
    return id.value_or("");
  }
  Result<std::string> markSending(SqliteQueueStore& s, const std::string& id, int64_t now) {
    return await<std::string>(q_, [&](auto done) { s.markSending(id, now, done); });
  }
  Result<std::string> markSending(SqliteQueueStore& s, const std::string& id, int64_t now,
                                  relay::AttemptStart start) {
    return await<std::string>(q_,
                              [&](auto done) { s.markSending(id, now, std::move(start), done); });
  }
  Result<relay::QueuedMessage> record(SqliteQueueStore& s, relay::AttemptOutcome o) {
    return await<relay::QueuedMessage>(q_, [&](auto done) { s.recordAttempt(std::move(o), done); });
  }
  Result<relay::QueuedMessage> get(SqliteQueueStore& s, const std::string& id) {
    return await<relay::QueuedMessage>(q_, [&](auto done) { s.get(id, done); });
  }
  std::vector<StoredEvent> allEvents(SqliteQueueStore& s) {
    auto all =
        await<std::vector<StoredEvent>>(q_, [&](auto done) { s.listEvents(0, 100000, done); });
    EXPECT_TRUE(all.has_value());
    return all.value_or(std::vector<StoredEvent>{});
  }
  std::string dbFile() const { return dir_.path() + "/mailgate.db"; }

  TempDir dir_;
  PostQueue q_;
};

} // namespace mailgate::store::testing
