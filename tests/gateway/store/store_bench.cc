// store_bench: how many messages per second the SQLite queue store makes durable when many
// submissions share each fsync. Prints figures; asserts nothing (benchmarks are not tests).
//
//   store_bench [--messages N] [--size BYTES] [--batch-max N] [--dir DIR] [--inflight a,b,c]
//
// For each in-flight level, a fresh store in a fresh directory; the main thread plays the loop:
// it keeps `inflight` enqueues outstanding and issues the next one from each completion, as an
// SMTP listener with that many sessions in DATA would.
#include "gateway/store/sqlite_queue_store.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <fcntl.h>
#include <filesystem>
#include <fmt/format.h>
#include <mutex>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using mailgate::Result;

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

// The cost of one durable append on this disk, for comparison with the store's figures.
double fsyncsPerSecond(const std::string& dir) {
  const std::string path = dir + "/fsync-probe";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return 0;
  }
  const std::string block(4096, 'x');
  constexpr int kRounds = 500;
  const auto start = Clock::now();
  for (int i = 0; i < kRounds; ++i) {
    if (::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size()) ||
        ::fdatasync(fd) != 0) {
      break;
    }
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fd);
  ::unlink(path.c_str());
  return kRounds / secs;
}

struct Run {
  double per_second = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  uint64_t commits = 0;
  size_t failures = 0;
};

Run runOnce(const std::string& dir, size_t messages, size_t size, size_t inflight,
            size_t batch_max) {
  LoopQueue loop;
  mailgate::store::SqliteStoreOptions o;
  o.data_dir = dir;
  o.batch_max = batch_max;
  o.post = loop.fn();
  auto store = mailgate::store::openSqliteQueueStore(std::move(o));
  if (!store) {
    fmt::print(stderr, "open failed: {}\n", store.error().describe());
    std::exit(1);
  }
  std::string body = "Subject: bench\r\n\r\n";
  while (body.size() < size) {
    body += std::string(std::min<size_t>(76, size - body.size()), 'b') + "\r\n";
  }
  body.resize(size);

  std::vector<double> latencies;
  latencies.reserve(messages);
  size_t issued = 0;
  size_t completed = 0;
  Run run;
  std::function<void()> issue = [&] {
    if (issued == messages) {
      return;
    }
    ++issued;
    mailgate::relay::NewMessage m;
    m.mail_from = "bench@example.net";
    m.recipients = {"sink@example.net"};
    m.body = body;
    m.submitter = "bench";
    m.now_ms = 1'790'000'000'000;
    m.expires_at_ms = m.now_ms + 5LL * 86'400'000;
    const auto t0 = Clock::now();
    (*store)->enqueue(std::move(m), [&, t0](Result<std::string> r) {
      latencies.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      ++completed;
      run.failures += r ? 0 : 1;
      issue();
    });
  };
  const auto start = Clock::now();
  for (size_t i = 0; i < inflight; ++i) {
    issue();
  }
  while (completed < messages) {
    loop.runOne();
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  run.per_second = static_cast<double>(messages) / secs;
  run.p50_ms = percentile(latencies, 0.50);
  run.p99_ms = percentile(latencies, 0.99);
  run.commits = (*store)->stats().commits;
  return run;
}

std::vector<size_t> parseList(const std::string& s) {
  std::vector<size_t> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t comma = s.find(',', pos);
    out.push_back(std::strtoull(s.substr(pos, comma - pos).c_str(), nullptr, 10));
    if (comma == std::string::npos) {
      break;
    }
    pos = comma + 1;
  }
  return out;
}

} // namespace

int main(int argc, char** argv) {
  size_t messages = 20'000;
  size_t size = 2048;
  size_t batch_max = 512;
  int repeats = 3;
  std::string base = std::filesystem::temp_directory_path().string();
  std::vector<size_t> inflight = {1, 16, 64, 256, 1024};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--messages") {
      messages = std::strtoull(value.c_str(), nullptr, 10);
    } else if (flag == "--size") {
      size = std::strtoull(value.c_str(), nullptr, 10);
    } else if (flag == "--batch-max") {
      batch_max = std::strtoull(value.c_str(), nullptr, 10);
    } else if (flag == "--dir") {
      base = value;
    } else if (flag == "--inflight") {
      inflight = parseList(value);
    } else if (flag == "--repeats") {
      repeats = std::max(1, std::atoi(value.c_str()));
    } else {
      fmt::print(stderr, "unknown flag {}\n", flag);
      return 2;
    }
  }
  std::string root = base + "/mailgate-store-bench-XXXXXX";
  if (mkdtemp(root.data()) == nullptr) {
    fmt::print(stderr, "cannot create a directory under {}\n", base);
    return 1;
  }
  fmt::print("store_bench: {} messages of {} bytes, batch_max {}, {} runs each (median shown), "
             "dir {}\n",
             messages, size, batch_max, repeats, root);
  fmt::print("raw disk: {:.0f} write+fdatasync of 4 KiB per second\n", fsyncsPerSecond(root));
  fmt::print("{:>9} {:>12} {:>9} {:>10} {:>10} {:>10} {:>9}\n", "inflight", "msgs/s", "commits",
             "msgs/fsync", "p50 ms", "p99 ms", "failures");
  int run_no = 0;
  for (size_t n : inflight) {
    std::vector<Run> runs;
    for (int r = 0; r < repeats; ++r) {
      const std::string dir = fmt::format("{}/run{}", root, run_no++);
      runs.push_back(runOnce(dir, messages, size, std::max<size_t>(n, 1), batch_max));
      std::filesystem::remove_all(dir);
    }
    std::sort(runs.begin(), runs.end(),
              [](const Run& a, const Run& b) { return a.per_second < b.per_second; });
    const Run& med = runs[runs.size() / 2];
    fmt::print("{:>9} {:>12.0f} {:>9} {:>10.1f} {:>10.2f} {:>10.2f} {:>9}\n", n, med.per_second,
               med.commits,
               med.commits == 0 ? 0.0
                                : static_cast<double>(messages) / static_cast<double>(med.commits),
               med.p50_ms, med.p99_ms, med.failures);
  }
  std::filesystem::remove_all(root);
  return 0;
}
