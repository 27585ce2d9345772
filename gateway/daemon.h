// The composition root of mailgated: builds every component from the configuration, wires them
// together, runs the loop, and drains on SIGTERM.
#pragma once

#include "base/error.h"
#include "config/config.h"

#include <memory>

namespace mailgate::gateway {

class Daemon {
public:
  // Opens the store, recovers unsent mail, starts delivery and the listeners. Returns an error
  // (for the operator: bad data_dir, port in use, unreadable certificate...) without side effects
  // beyond the data_dir it may have created.
  static Result<std::unique_ptr<Daemon>> create(config::Config config, std::string config_path);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Runs until SIGTERM/SIGINT finished draining. Returns the process exit code.
  int run();

  struct Impl;
  // Only create() can make the tag, so only create() can construct a Daemon.
  class PrivateTag {
    friend class Daemon;
    PrivateTag() = default;
  };
  Daemon(PrivateTag, std::unique_ptr<Impl> impl);

private:
  std::unique_ptr<Impl> impl_;
};

} // namespace mailgate::gateway
