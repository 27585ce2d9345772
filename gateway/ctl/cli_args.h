// mailgatectl's command line: what the operator asked for, parsed without touching the
// environment, the network or the file system.
#pragma once

#include "base/error.h"

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace mailgate::ctl {

enum class Command {
  kHelp,
  kVersion,
  kStatus,
  kMailboxes,
  kMailbox,
  kQueue,
  kMessage,
  kFailover,
  kFailback,
  kRetry,
  kCancel,
  kReload,
};

// "status", "mailboxes", ...; "help" and "version" for the two informational ones.
std::string_view commandName(Command c);

struct CtlArgs {
  Command command = Command::kHelp;
  std::string target; // ADDRESS (mailbox, failover, failback) or ID (message, retry, cancel)

  // Global options; unset ones fall back to the environment (ctl_runner.h).
  std::optional<std::string> url;
  std::optional<std::string> token_file;
  std::optional<std::string> cacert;
  std::chrono::milliseconds timeout{10000};
  bool json = false;
  bool http2 = false;

  // Command options. `tenant` serves `mailboxes` and `queue`.
  std::string tenant;
  std::string state;
  std::string mailbox;
  std::string route;
  std::optional<int64_t> limit; // queue: show at most this many (default 50)
  bool all = false;             // queue: follow `next` to the end
  std::optional<std::string> reason;
};

// Options may come before or after the command, as `--name value` or `--name=value`; `--` ends
// them. `--help` or `--version` anywhere wins over everything else. Errors: "ctl.usage" with a
// message naming what is wrong and a hint; `--token` in any form is refused this way.
Result<CtlArgs> parseArgs(std::span<const std::string> args);

// The text of `mailgatectl --help`: commands, options, token sources, exit codes.
std::string helpText();

} // namespace mailgate::ctl
