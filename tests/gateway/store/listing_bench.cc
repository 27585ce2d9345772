// listing_bench: what the control API's reads cost on a large queue. Prints figures; asserts
// nothing (benchmarks are not tests).
//
//   listing_bench [--rows N] [--dir DIR] [--repeats N]
//
// Fills a fresh store with N messages straight through SQL (20 tenants, 1,000 mailboxes, three
// routes, mostly sent), then times one page of GET /v1/queue for the filter combinations the API
// offers (first page and a page deep in the listing), countsFor, a message's history, and a get()
// while enqueues keep commits in flight.
#include "gateway/store/sqlite_queue_store.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fmt/format.h>
#include <mutex>
#include <sqlite3.h>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using mailgate::Result;
using mailgate::relay::MessageState;
using mailgate::store::MessagePage;
using mailgate::store::MessageQuery;

class LoopQueue {
public:
  mailgate::store::PostFn fn() {
    return [this](std::function<void()> f) {
      {
        std::lock_guard lock(mu_);
        q_.push_back(std::move(f));
      }
      cv_.notify_one();
    };
  }
  void runOne() {
    std::function<void()> f;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !q_.empty(); });
      f = std::move(q_.front());
      q_.pop_front();
    }
    f();
  }

private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// The rows, written by SQLite itself; the schema's triggers keep message_counts.
bool fill(const std::string& file, size_t rows) {
  sqlite3* db = nullptr;
  if (sqlite3_open(file.c_str(), &db) != SQLITE_OK) {
    return false;
  }
  const std::string sql = fmt::format(
      "PRAGMA synchronous = OFF; BEGIN;"
      "INSERT INTO bodies (body_id, data) VALUES (1, X'48690D0A');"
      "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {}), "
      // the state: a hash of i, so that it is independent of tenant, mailbox and route
      "s(i, h) AS (SELECT i, ((i * 2654435761) >> 16) % 100 FROM n) "
      "INSERT INTO messages (id, body_id, state, mail_from, submitter, tenant, mailbox, "
      "message_id, route, smtputf8, body_8bit, size, attempts, created_ms, updated_ms, "
      "next_attempt_ms, expires_at_ms, last_reply) "
      "SELECT printf('01BENCH%019d', i), 1, "
      "CASE WHEN h < 90 THEN 'sent' WHEN h < 93 THEN 'failed' WHEN h < 97 THEN 'deferred' "
      "WHEN h < 99 THEN 'queued' ELSE 'sending' END, "
      "'rep@example.com', 'crm', 't' || (i % 1000 % 20), "
      "'rep' || (i % 1000) || '@t' || (i % 1000 % 20) || '.example', '', "
      "CASE i % 3 WHEN 0 THEN 'microsoft365' WHEN 1 THEN 'relay-a' ELSE 'relay-b' END, "
      "0, 0, 4, 1, 1790000000000 + i, 1790000000000 + i, 1790000000000 + i, 9999999999999, '' "
      "FROM s;"
      "INSERT INTO recipients (message, idx, address, status, last_reply, updated_ms) "
      "SELECT id, 0, 'x@example.net', 'pending', '', 1 FROM messages;"
      "INSERT INTO events (id, type, time, queue_id, tenant, mailbox, data) "
      "SELECT id, 'message.queued', '2026-09-21T14:13:20Z', id, tenant, mailbox, '{{}}' "
      "FROM messages;"
      "COMMIT;",
      rows - 1);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    fmt::print(stderr, "fill: {}\n", err != nullptr ? err : "?");
  }
  sqlite3_free(err);
  sqlite3_close(db);
  return rc == SQLITE_OK;
}

template <typename T, typename Call> Result<T> await(LoopQueue& loop, Call call) {
  std::optional<Result<T>> out;
  call([&](Result<T> r) { out.emplace(std::move(r)); });
  while (!out) {
    loop.runOne();
  }
  return std::move(*out);
}

} // namespace

int main(int argc, char** argv) {
  size_t rows = 1'000'000;
  int repeats = 20;
  std::string base = std::filesystem::temp_directory_path().string();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--rows") {
      rows = std::max<size_t>(std::strtoull(value.c_str(), nullptr, 10), 1000);
    } else if (flag == "--dir") {
      base = value;
    } else if (flag == "--repeats") {
      repeats = std::max(1, std::atoi(value.c_str()));
    } else {
      fmt::print(stderr, "unknown flag {}\n", flag);
      return 2;
    }
  }
  std::string root = base + "/mailgate-listing-bench-XXXXXX";
  if (mkdtemp(root.data()) == nullptr) {
    fmt::print(stderr, "cannot create a directory under {}\n", base);
    return 1;
  }
  LoopQueue loop;
  const auto openStore = [&] {
    mailgate::store::SqliteStoreOptions o;
    o.data_dir = root;
    o.post = loop.fn();
    auto store = mailgate::store::openSqliteQueueStore(std::move(o));
    if (!store) {
      fmt::print(stderr, "open failed: {}\n", store.error().describe());
      std::exit(1);
    }
    return std::move(*store);
  };
  openStore().reset(); // the schema
  const auto fill_start = Clock::now();
  if (!fill(root + "/mailgate.db", rows)) {
    return 1;
  }
  fmt::print("listing_bench: {} messages written in {:.1f} s, dir {}\n", rows,
             std::chrono::duration<double>(Clock::now() - fill_start).count(), root);
  auto store = openStore();

  struct Case {
    std::string name;
    MessageQuery q;
  };
  std::vector<Case> cases;
  const auto add = [&](std::string name, auto edit) {
    MessageQuery q;
    edit(q);
    cases.push_back({std::move(name), q});
  };
  add("no filter", [](MessageQuery&) {});
  add("state=sending (1 %)", [](MessageQuery& q) { q.state = MessageState::kSending; });
  add("state=sent (90 %)", [](MessageQuery& q) { q.state = MessageState::kSent; });
  add("route=relay-a", [](MessageQuery& q) { q.route = "relay-a"; });
  add("route=relay-a state=queued", [](MessageQuery& q) {
    q.route = "relay-a";
    q.state = MessageState::kQueued;
  });
  add("tenant=t3", [](MessageQuery& q) { q.tenant = "t3"; });
  add("tenant=t3 state=deferred", [](MessageQuery& q) {
    q.tenant = "t3";
    q.state = MessageState::kDeferred;
  });
  add("tenant=t3 route=microsoft365 state=failed", [](MessageQuery& q) {
    q.tenant = "t3";
    q.route = "microsoft365";
    q.state = MessageState::kFailed;
  });
  add("scope of 5 tenants", [](MessageQuery& q) { q.tenants = {"t1", "t2", "t3", "t4", "t5"}; });
  add("scope of 5 tenants state=queued", [](MessageQuery& q) {
    q.tenants = {"t1", "t2", "t3", "t4", "t5"};
    q.state = MessageState::kQueued;
  });
  add("mailbox=REP7@t7.example", [](MessageQuery& q) { q.mailbox = "REP7@t7.example"; });
  add("mailbox state=sending", [](MessageQuery& q) {
    q.mailbox = "rep7@t7.example";
    q.state = MessageState::kSending;
  });
  add("mailbox route=relay-b tenant=t7", [](MessageQuery& q) {
    q.mailbox = "rep7@t7.example";
    q.route = "relay-b";
    q.tenant = "t7";
  });
  add("mailbox outside scope", [](MessageQuery& q) {
    q.mailbox = "rep7@t7.example";
    q.tenants = {"t1"};
  });

  fmt::print("one page of 50 (ms, p50 / max of {}):\n", repeats);
  fmt::print("{:<44} {:>16} {:>16} {:>8}\n", "query", "first page", "page at 50 %", "found");
  for (auto& c : cases) {
    std::vector<double> first;
    std::vector<double> middle;
    size_t found = 0;
    MessageQuery q = c.q;
    q.after = fmt::format("01BENCH{:019d}", rows / 2);
    for (int r = 0; r < repeats; ++r) {
      auto t0 = Clock::now();
      auto page = await<MessagePage>(loop, [&](auto done) { store->listMessages(c.q, done); });
      first.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      found = page ? page->messages.size() : 0;
      t0 = Clock::now();
      (void)await<MessagePage>(loop, [&](auto done) { store->listMessages(q, done); });
      middle.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    fmt::print("{:<44} {:>7.2f} / {:>6.2f} {:>7.2f} / {:>6.2f} {:>8}\n", c.name,
               percentile(first, 0.5), percentile(first, 1.0), percentile(middle, 0.5),
               percentile(middle, 1.0), found);
  }

  const auto timeIt = [&](const char* name, auto call) {
    std::vector<double> ms;
    for (int r = 0; r < repeats; ++r) {
      const auto t0 = Clock::now();
      call();
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    fmt::print("{:<44} {:>7.3f} / {:>6.3f}\n", name, percentile(ms, 0.5), percentile(ms, 1.0));
  };
  using mailgate::relay::QueueCounts;
  timeIt("countsFor *", [&] {
    (void)await<QueueCounts>(loop, [&](auto done) { store->countsFor({"*"}, done); });
  });
  timeIt("countsFor 5 tenants", [&] {
    (void)await<QueueCounts>(loop, [&](auto done) {
      store->countsFor({"t1", "t2", "t3", "t4", "t5"}, done);
    });
  });
  const std::string some = fmt::format("01BENCH{:019d}", rows / 3);
  timeIt("listMessageEvents", [&] {
    (void)await<std::vector<mailgate::store::StoredEvent>>(
        loop, [&](auto done) { store->listMessageEvents(some, 100, done); });
  });
  timeIt("get, idle store", [&] {
    (void)await<mailgate::relay::QueuedMessage>(loop, [&](auto done) { store->get(some, done); });
  });

  // A get() while 64 enqueues stay in flight: it waits for the commit in progress.
  size_t in_flight = 0;
  bool writing = true;
  std::function<void()> issue = [&] {
    if (!writing) {
      return;
    }
    ++in_flight;
    mailgate::relay::NewMessage m;
    m.mail_from = "bench@example.net";
    m.recipients = {"sink@example.net"};
    m.body = std::string(2048, 'b');
    m.tenant = "t1";
    m.now_ms = 1'800'000'000'000;
    m.expires_at_ms = m.now_ms + 5LL * 86'400'000;
    store->enqueue(std::move(m), [&](Result<std::string>) {
      --in_flight;
      issue();
    });
  };
  for (int i = 0; i < 64; ++i) {
    issue();
  }
  std::vector<double> ms;
  for (int r = 0; r < std::max(repeats, 200); ++r) {
    std::optional<Result<mailgate::relay::QueuedMessage>> got;
    const auto t0 = Clock::now();
    store->get(some, [&](Result<mailgate::relay::QueuedMessage> x) { got.emplace(std::move(x)); });
    while (!got) {
      loop.runOne();
    }
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  writing = false;
  while (in_flight > 0) {
    loop.runOne();
  }
  fmt::print("{:<44} {:>7.3f} / {:>6.3f}  (p99 {:.3f})\n", "get, 64 enqueues in flight",
             percentile(ms, 0.5), percentile(ms, 1.0), percentile(ms, 0.99));
  store.reset();
  std::filesystem::remove_all(root);
  return 0;
}
