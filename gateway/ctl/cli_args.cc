#include "gateway/ctl/cli_args.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <fmt/format.h>
#include <vector>

namespace mailgate::ctl {

namespace {

constexpr std::string_view kSeeHelp = "run 'mailgatectl --help' for commands and options";
constexpr int64_t kMaxLimit = 1000000;
constexpr double kMaxTimeoutSeconds = 86400;

struct CommandSpec {
  Command command;
  std::string_view name;
  std::string_view operand; // "ADDRESS", "ID" or empty: the one positional argument it takes
  std::vector<std::string_view> options;
};

const std::vector<CommandSpec>& commandSpecs() {
  static const std::vector<CommandSpec> kSpecs{
      {Command::kStatus, "status", "", {}},
      {Command::kMailboxes, "mailboxes", "", {"--tenant"}},
      {Command::kMailbox, "mailbox", "ADDRESS", {}},
      {Command::kQueue,
       "queue",
       "",
       {"--state", "--tenant", "--mailbox", "--route", "--limit", "--all"}},
      {Command::kMessage, "message", "ID", {}},
      {Command::kFailover, "failover", "ADDRESS", {"--reason"}},
      {Command::kFailback, "failback", "ADDRESS", {}},
      {Command::kRetry, "retry", "ID", {}},
      {Command::kCancel, "cancel", "ID", {}},
      {Command::kReload, "reload", "", {}},
  };
  return kSpecs;
}

struct OptionSpec {
  std::string_view name;
  bool takes_value;
};

constexpr std::array kOptions{
    OptionSpec{"--url", true},     OptionSpec{"--token-file", true}, OptionSpec{"--cacert", true},
    OptionSpec{"--timeout", true}, OptionSpec{"--json", false},      OptionSpec{"--http2", false},
    OptionSpec{"--tenant", true},  OptionSpec{"--state", true},      OptionSpec{"--mailbox", true},
    OptionSpec{"--route", true},   OptionSpec{"--limit", true},      OptionSpec{"--all", false},
    OptionSpec{"--reason", true},
};

constexpr std::array<std::string_view, 6> kGlobalOptions{"--url",     "--token-file", "--cacert",
                                                         "--timeout", "--json",       "--http2"};
constexpr std::array<std::string_view, 5> kStates{"queued", "sending", "deferred", "sent",
                                                  "failed"};

std::unexpected<Error> usage(std::string message, std::string hint = std::string(kSeeHelp)) {
  return fail("ctl.usage", std::move(message), std::move(hint));
}

Result<std::chrono::milliseconds> parseTimeout(const std::string& v) {
  double seconds = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), seconds);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size() || !std::isfinite(seconds) ||
      seconds <= 0 || seconds > kMaxTimeoutSeconds) {
    return usage(fmt::format("--timeout {} is not a number of seconds above 0 and up to {}", v,
                             kMaxTimeoutSeconds),
                 "e.g. --timeout 30 or --timeout 0.5");
  }
  const auto ms = static_cast<int64_t>(std::ceil(seconds * 1000));
  return std::chrono::milliseconds(std::max<int64_t>(ms, 1));
}

Result<int64_t> parseLimit(const std::string& v) {
  int64_t n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size() || n < 1 || n > kMaxLimit) {
    return usage(fmt::format("--limit {} is not a whole number from 1 to {}", v, kMaxLimit),
                 "e.g. --limit 200, or --all for every message");
  }
  return n;
}

} // namespace

std::string_view commandName(Command c) {
  if (c == Command::kHelp) {
    return "help";
  }
  if (c == Command::kVersion) {
    return "version";
  }
  for (const auto& s : commandSpecs()) {
    if (s.command == c) {
      return s.name;
    }
  }
  return "?";
}

Result<CtlArgs> parseArgs(std::span<const std::string> args) {
  // --help and --version first: they must work whatever else is on the line.
  for (const auto& a : args) {
    if (a == "--") {
      break;
    }
    if (a == "--help" || a == "-h") {
      return CtlArgs{};
    }
    if (a == "--version") {
      CtlArgs v;
      v.command = Command::kVersion;
      return v;
    }
  }

  CtlArgs out;
  std::vector<std::string> positional;
  std::vector<std::string> seen;
  bool options_done = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (options_done || !a.starts_with("-") || a == "-") {
      positional.push_back(a);
      continue;
    }
    if (a == "--") {
      options_done = true;
      continue;
    }
    const auto eq = a.find('=');
    const std::string name = a.substr(0, eq);
    if (name == "--token") {
      return usage("the token is never taken on the command line (it would show in ps)",
                   "set MAILGATE_TOKEN, or pass --token-file FILE (or set MAILGATE_TOKEN_FILE)");
    }
    const auto spec = std::ranges::find(kOptions, std::string_view(name), &OptionSpec::name);
    if (spec == kOptions.end()) {
      return usage(fmt::format("unknown option {}", name));
    }
    if (std::ranges::find(seen, name) != seen.end()) {
      return usage(fmt::format("{} is given twice", name));
    }
    seen.push_back(name);
    std::string value;
    if (spec->takes_value) {
      if (eq != std::string::npos) {
        value = a.substr(eq + 1);
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return usage(fmt::format("{} needs a value", name));
      }
      if (value.empty()) {
        return usage(fmt::format("{} needs a non-empty value", name));
      }
    } else if (eq != std::string::npos) {
      return usage(fmt::format("{} takes no value", name));
    }

    if (name == "--url") {
      out.url = value;
    } else if (name == "--token-file") {
      out.token_file = value;
    } else if (name == "--cacert") {
      out.cacert = value;
    } else if (name == "--timeout") {
      auto t = parseTimeout(value);
      if (!t) {
        return std::unexpected(t.error());
      }
      out.timeout = *t;
    } else if (name == "--json") {
      out.json = true;
    } else if (name == "--http2") {
      out.http2 = true;
    } else if (name == "--tenant") {
      out.tenant = value;
    } else if (name == "--state") {
      if (std::ranges::find(kStates, std::string_view(value)) == kStates.end()) {
        return usage(fmt::format("--state {} is not a message state", value),
                     "use queued, sending, deferred, sent or failed");
      }
      out.state = value;
    } else if (name == "--mailbox") {
      out.mailbox = value;
    } else if (name == "--route") {
      out.route = value;
    } else if (name == "--limit") {
      auto n = parseLimit(value);
      if (!n) {
        return std::unexpected(n.error());
      }
      out.limit = *n;
    } else if (name == "--all") {
      out.all = true;
    } else if (name == "--reason") {
      out.reason = value;
    }
  }

  if (positional.empty()) {
    return usage("no command given");
  }
  const std::string& word = positional.front();
  if (word == "help") {
    return CtlArgs{};
  }
  const auto& specs = commandSpecs();
  const auto spec = std::ranges::find(specs, std::string_view(word), &CommandSpec::name);
  if (spec == specs.end()) {
    return usage(fmt::format("unknown command {}", word));
  }
  out.command = spec->command;
  for (const auto& name : seen) {
    if (std::ranges::find(kGlobalOptions, std::string_view(name)) == kGlobalOptions.end() &&
        std::ranges::find(spec->options, std::string_view(name)) == spec->options.end()) {
      return usage(fmt::format("{} does not take {}", spec->name, name));
    }
  }
  const std::size_t want = spec->operand.empty() ? 1 : 2;
  if (positional.size() < want) {
    return usage(fmt::format("{} needs {}", spec->name, spec->operand),
                 fmt::format("mailgatectl {} {}", spec->name, spec->operand));
  }
  if (positional.size() > want) {
    return usage(
        fmt::format("{} takes {}, not {}", spec->name,
                    spec->operand.empty() ? "no argument" : "one " + std::string(spec->operand),
                    positional[want]));
  }
  if (want == 2) {
    out.target = positional[1];
    if (out.target.empty()) {
      return usage(fmt::format("{} needs a non-empty {}", spec->name, spec->operand));
    }
  }
  if (out.all && out.limit) {
    return usage("queue takes --limit N or --all, not both",
                 "--limit N shows at most N messages, --all every one");
  }
  return out;
}

std::string helpText() {
  return R"(Usage: mailgatectl [OPTIONS] COMMAND [ARGS]

Operate a running mailgated through its control API (docs/cli.md, docs/api.md).

Commands:
  status                         node, version, readiness, uptime, connections, queue counts
  mailboxes [--tenant T]         every mailbox in scope: route state, ledger, last error
  mailbox ADDRESS                one mailbox in detail
  queue [--state S] [--tenant T] [--mailbox A] [--route R] [--limit N | --all]
                                 messages, newest first (S: queued, sending, deferred, sent,
                                 failed); at most N (default 50), or every one with --all
  message ID                     one message: recipients, last replies, events
  failover ADDRESS [--reason TEXT]
                                 send the mailbox's new mail through its tenant's fallback relays
  failback ADDRESS               send through Microsoft 365 again
  retry ID                       make a queued or deferred message due now
  cancel ID                      cancel a queued or deferred message (no confirmation asked)
  reload                         re-read and apply mailgated's configuration file
  help                           this text

Options:
  --url URL          the API (default: $MAILGATE_URL, else http://127.0.0.1:8025); https uses
                     HTTP/2 via ALPN, http uses HTTP/1.1
  --token-file FILE  read the API token from FILE (a trailing newline is ignored)
  --cacert FILE      PEM CA certificate(s) to verify an https API with
  --timeout SECONDS  per request, connecting included (default 10)
  --http2            http URLs: HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1
  --json             print the server's JSON answer (pretty, one document) on stdout
  --help, --version

Token: --token-file FILE, else $MAILGATE_TOKEN, else the file named by $MAILGATE_TOKEN_FILE.
It is never accepted as an argument (it would show in ps) and never printed.

Exit codes:
  0  success
  1  the API answered another error (5xx, other 4xx), or an answer was not understood
  2  usage error (command line, URL, --cacert file)
  3  authentication or permission refused (401/403), or no usable token
  4  not found (404)
  5  conflict (409: message in flight or already final, no fallback relay)
  6  reload: the configuration is invalid (422); every FILE:LINE:COL line is printed
  7  cannot reach the API (connect, TLS, timeout)
  8  status: the gateway is not ready (draining)
)";
}

} // namespace mailgate::ctl
