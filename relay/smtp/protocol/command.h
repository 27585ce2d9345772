// SMTP command lines (RFC 5321 section 4.1, ESMTP parameters of RFC 1870, 6152, 6531, 3461 and
// AUTH of RFC 4954) parsed into values. Pure functions; no state.
#pragma once

#include "base/error.h"
#include "relay/smtp/protocol/address.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mailgate::relay::smtp {

enum class Verb {
  kHelo,
  kEhlo,
  kMail,
  kRcpt,
  kData,
  kBdat,
  kRset,
  kNoop,
  kQuit,
  kVrfy,
  kExpn,
  kHelp,
  kStartTls,
  kAuth,
};

enum class BodyType {
  kUnspecified,
  k7Bit,
  k8BitMime,
};

// MAIL FROM parameters this server understands. RET and ENVID (DSN) are accepted and kept so they
// can be passed on, though DSN is not advertised.
struct MailParameters {
  std::optional<std::uint64_t> size; // SIZE=n, the client's estimate
  BodyType body = BodyType::kUnspecified;
  bool smtputf8 = false;
  std::string ret;   // "FULL" or "HDRS", upper-cased; empty when absent
  std::string envid; // xtext as sent; empty when absent
  bool any = false;  // at least one parameter was given
};

// RCPT TO parameters (DSN), accepted and kept as sent.
struct RcptParameters {
  std::string notify;
  std::string orcpt;
  bool any = false;
};

struct Command {
  Verb verb = Verb::kNoop;
  // HELO/EHLO: the client's name. VRFY/EXPN/HELP/NOOP: the argument as sent (may be empty).
  std::string argument;
  ParsedPath path; // MAIL, RCPT
  MailParameters mail;
  RcptParameters rcpt;
  std::string auth_mechanism; // AUTH: upper-cased
  // AUTH: the initial response exactly as sent ("=" stands for an empty one), still base64.
  std::optional<std::string> auth_initial_response;
};

// Parses one command line, without its CRLF. The verb is case-insensitive; trailing spaces are
// ignored. On failure the Error's code says which reply fits and its message is a reply text that
// echoes no client bytes:
//   "smtp.command.unknown"   - not a command this server knows   (500 5.5.1)
//   "smtp.command.syntax"    - known verb, bad arguments          (501 5.5.4)
//   "smtp.command.parameter" - unknown or unsupported ESMTP param (555 5.5.4)
//   "smtp.command.address"   - bad path in MAIL or RCPT           (501 5.1.7 / 501 5.1.3)
//   "smtp.command.utf8"      - non-ASCII MAIL FROM without SMTPUTF8 (553 5.6.7)
// A non-ASCII RCPT TO parses (path.non_ascii is set): only the session knows whether the
// transaction's MAIL carried SMTPUTF8.
[[nodiscard]] Result<Command> parseCommand(std::string_view line);

} // namespace mailgate::relay::smtp
