#include "relay/smtp/protocol/server_session.h"

#include "base/base64.h"
#include "relay/smtp/protocol/reply.h"

#include <algorithm>
#include <utility>

namespace mailgate::relay::smtp {
namespace {

constexpr std::string_view kMustStartTls = "Must issue a STARTTLS command first";

bool allowedBeforeTls(Verb v) {
  return v == Verb::kEhlo || v == Verb::kHelo || v == Verb::kStartTls || v == Verb::kNoop ||
         v == Verb::kRset || v == Verb::kQuit;
}

bool startsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) {
    return false;
  }
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'a' && c <= 'z') {
      c = static_cast<char>(c - 32);
    }
    if (c != prefix[i]) {
      return false;
    }
  }
  return true;
}

std::string_view mechanismName(SaslMechanism m) {
  return m == SaslMechanism::kPlain ? "PLAIN" : "LOGIN";
}

} // namespace

ServerSession::ServerSession(ServerOptions options)
    : options_(std::move(options)), tls_active_(options_.tls_active),
      identity_(options_.trusted_identity) {
  // A limit below RFC 5321's minimum would refuse legitimate commands.
  options_.max_line_length = std::max<std::size_t>(options_.max_line_length, 512);
  options_.max_auth_failures = std::max(options_.max_auth_failures, 1);
  options_.max_errors = std::max(options_.max_errors, 1);
}

void ServerSession::greet() {
  if (phase_ == Phase::kClosed) {
    return;
  }
  reply(220, "", options_.hostname + " ESMTP mailgate");
}

void ServerSession::receive(std::span<const char> bytes) {
  const std::string_view in(bytes.data(), bytes.size());
  if (phase_ == Phase::kClosed || phase_ == Phase::kWaitTls) {
    return;
  }
  if (waitingForDriver()) {
    hold(in);
    return;
  }
  const std::size_t used = consume(in);
  hold(in.substr(used));
}

void ServerSession::hold(std::string_view rest) {
  if (rest.empty() || phase_ == Phase::kClosed || phase_ == Phase::kWaitTls) {
    return; // after STARTTLS, plaintext that followed the command is dropped on purpose
  }
  if (held_.size() + rest.size() > options_.max_held_bytes) {
    flooded_ = true;
    std::string().swap(held_);
    return;
  }
  held_.append(rest);
}

void ServerSession::resume() {
  if (flooded_) {
    closeWith(421, "4.7.0", options_.hostname + " Error: too much pipelined input",
              "pipelining flood");
    return;
  }
  if (held_.empty()) {
    return;
  }
  const std::string pending = std::move(held_);
  held_.clear();
  const std::size_t used = consume(pending);
  hold(std::string_view(pending).substr(used));
}

std::string ServerSession::takeOutput() {
  std::string out = std::move(out_);
  out_.clear();
  return out;
}

std::optional<ServerSession::Request> ServerSession::nextRequest() {
  if (requests_.empty()) {
    return std::nullopt;
  }
  Request r = std::move(requests_.front());
  requests_.pop_front();
  return r;
}

std::size_t ServerSession::consume(std::string_view in) {
  std::size_t pos = 0;
  while (pos < in.size()) {
    if (phase_ == Phase::kData) {
      pos += decoder_->feed(in.substr(pos));
      if (decoder_->done()) {
        endOfData();
      }
      continue;
    }
    if (phase_ != Phase::kCommand && phase_ != Phase::kAuthPlain &&
        phase_ != Phase::kAuthLoginUser && phase_ != Phase::kAuthLoginPass) {
      return pos; // waiting for the driver, or closed
    }
    const std::size_t nl = in.find('\n', pos);
    const std::string_view piece =
        in.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? in.size() : nl + 1;
    if (discarding_) {
      discarding_ = nl == std::string_view::npos;
      continue;
    }
    // The buffer may hold the line and its CR: never more.
    if (line_.size() + piece.size() > options_.max_line_length + 1) {
      std::string().swap(line_);
      discarding_ = nl == std::string_view::npos;
      lineTooLong();
      continue;
    }
    line_.append(piece);
    if (nl == std::string_view::npos) {
      continue;
    }
    const std::string line = std::move(line_);
    line_.clear();
    handleLine(line);
  }
  return pos;
}

void ServerSession::lineTooLong() {
  if (phase_ != Phase::kCommand) {
    phase_ = Phase::kCommand; // an overlong SASL response ends the exchange
    login_user_.clear();
  }
  errorReply(500, "5.5.2", "Error: line too long");
}

void ServerSession::handleLine(std::string_view raw) {
  // `raw` is what came before the LF. Policy (docs/smtp-policy.md): a command line must end in
  // CRLF and hold no other CR and no NUL.
  const bool crlf = !raw.empty() && raw.back() == '\r';
  std::string_view line = crlf ? raw.substr(0, raw.size() - 1) : raw;
  if (!crlf || line.find('\r') != std::string_view::npos ||
      line.find('\0') != std::string_view::npos) {
    if (phase_ != Phase::kCommand) {
      phase_ = Phase::kCommand;
      login_user_.clear();
    }
    errorReply(500, "5.5.2",
               crlf ? "Error: bare CR or NUL in command line"
                    : "Error: bare LF received; command lines must end with CRLF");
    return;
  }
  if (line.size() > options_.max_line_length) {
    lineTooLong();
    return;
  }
  if (phase_ == Phase::kCommand) {
    handleCommand(line);
  } else {
    handleSaslResponse(line);
  }
}

void ServerSession::handleCommand(std::string_view line) {
  auto parsed = parseCommand(line);
  if (!parsed) {
    const Error& e = parsed.error();
    if (e.code == "smtp.command.unknown") {
      errorReply(500, "5.5.1", e.message);
    } else if (e.code == "smtp.command.parameter") {
      errorReply(555, "5.5.4", e.message);
    } else if (e.code == "smtp.command.address") {
      errorReply(501, startsWithIgnoreCase(line, "MAIL") ? "5.1.7" : "5.1.3", e.message);
    } else if (e.code == "smtp.command.utf8") {
      errorReply(553, "5.6.7", e.message);
    } else {
      errorReply(501, "5.5.4", e.message);
    }
    return;
  }
  const Command& cmd = *parsed;
  if (options_.require_tls && !tls_active_ && !allowedBeforeTls(cmd.verb)) {
    errorReply(530, "5.7.0", kMustStartTls);
    return;
  }
  switch (cmd.verb) {
  case Verb::kEhlo:
    handleEhlo(cmd, true);
    return;
  case Verb::kHelo:
    handleEhlo(cmd, false);
    return;
  case Verb::kStartTls:
    if (!options_.tls_available || tls_active_) {
      errorReply(tls_active_ ? 503 : 502, "5.5.1",
                 tls_active_ ? "Error: TLS already active" : "Error: command not implemented");
      return;
    }
    reply(220, "2.0.0", "Ready to start TLS");
    requests_.emplace_back(StartTls{});
    phase_ = Phase::kWaitTls;
    std::string().swap(held_);
    return;
  case Verb::kAuth:
    handleAuth(cmd);
    return;
  case Verb::kMail:
    handleMail(cmd);
    return;
  case Verb::kRcpt:
    handleRcpt(cmd);
    return;
  case Verb::kData:
    handleData();
    return;
  case Verb::kBdat:
    errorReply(502, "5.5.1", "Error: command not implemented");
    return;
  case Verb::kRset:
    resetTransaction();
    reply(250, "2.0.0", "Ok");
    return;
  case Verb::kNoop:
    reply(250, "2.0.0", "Ok");
    return;
  case Verb::kQuit:
    closeWith(221, "2.0.0", "Bye", "quit");
    return;
  case Verb::kVrfy:
    reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
    return;
  case Verb::kExpn:
    errorReply(502, "5.5.1", "Error: command not implemented");
    return;
  case Verb::kHelp:
    reply(214, "2.0.0",
          "Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP VRFY QUIT\n"
          "See RFC 5321");
    return;
  }
}

bool ServerSession::offersAuth() const {
  return !options_.auth_mechanisms.empty() && (tls_active_ || !options_.require_tls);
}

void ServerSession::handleEhlo(const Command& cmd, bool extended) {
  resetTransaction();
  helo_ = cmd.argument;
  esmtp_ = extended;
  if (!extended) {
    reply(250, "", options_.hostname);
    return;
  }
  std::string text = options_.hostname;
  text += "\nPIPELINING";
  text += "\nSIZE " + std::to_string(options_.max_message_bytes);
  text += "\n8BITMIME\nSMTPUTF8\nENHANCEDSTATUSCODES";
  if (options_.tls_available && !tls_active_) {
    text += "\nSTARTTLS";
  }
  if (offersAuth()) {
    text += "\nAUTH";
    for (const SaslMechanism m : options_.auth_mechanisms) {
      text += ' ';
      text += mechanismName(m);
    }
  }
  reply(250, "", text);
}

void ServerSession::handleAuth(const Command& cmd) {
  if (!offersAuth()) {
    errorReply(502, "5.5.1", "Error: authentication not enabled");
    return;
  }
  if (!esmtp_) {
    errorReply(503, "5.5.1", "Error: send EHLO first");
    return;
  }
  if (sasl_done_) {
    errorReply(503, "5.5.1", "Error: already authenticated");
    return;
  }
  if (in_transaction_) {
    errorReply(503, "5.5.1", "Error: MAIL transaction in progress");
    return;
  }
  const auto offered = [&](SaslMechanism m) {
    return std::find(options_.auth_mechanisms.begin(), options_.auth_mechanisms.end(), m) !=
           options_.auth_mechanisms.end();
  };
  if (cmd.auth_mechanism == "PLAIN" && offered(SaslMechanism::kPlain)) {
    if (cmd.auth_initial_response) {
      plainResponse(*cmd.auth_initial_response);
    } else {
      reply(334, "", "");
      phase_ = Phase::kAuthPlain;
    }
    return;
  }
  if (cmd.auth_mechanism == "LOGIN" && offered(SaslMechanism::kLogin)) {
    if (cmd.auth_initial_response) {
      // RFC 4954 allows the username as an initial response to LOGIN.
      const std::string_view b64 =
          *cmd.auth_initial_response == "=" ? std::string_view{} : *cmd.auth_initial_response;
      auto user = base64Decode(b64);
      if (!user) {
        errorReply(501, "5.5.2", "Error: cannot decode response");
        return;
      }
      login_user_ = std::move(*user);
      reply(334, "", "UGFzc3dvcmQ6"); // "Password:"
      phase_ = Phase::kAuthLoginPass;
    } else {
      reply(334, "", "VXNlcm5hbWU6"); // "Username:"
      phase_ = Phase::kAuthLoginUser;
    }
    return;
  }
  errorReply(504, "5.5.4", "Error: unsupported authentication mechanism");
}

void ServerSession::handleSaslResponse(std::string_view line) {
  const Phase phase = phase_;
  phase_ = Phase::kCommand;
  if (line == "*") {
    login_user_.clear();
    errorReply(501, "5.7.0", "Authentication cancelled");
    return;
  }
  if (phase == Phase::kAuthPlain) {
    plainResponse(line);
    return;
  }
  auto decoded = base64Decode(line);
  if (!decoded) {
    login_user_.clear();
    errorReply(501, "5.5.2", "Error: cannot decode response");
    return;
  }
  if (phase == Phase::kAuthLoginUser) {
    login_user_ = std::move(*decoded);
    reply(334, "", "UGFzc3dvcmQ6"); // "Password:"
    phase_ = Phase::kAuthLoginPass;
    return;
  }
  requests_.emplace_back(Authenticate{"LOGIN", std::move(login_user_), std::move(*decoded)});
  login_user_.clear();
  phase_ = Phase::kWaitAuth;
}

void ServerSession::plainResponse(std::string_view base64) {
  // message = [authzid] NUL authcid NUL passwd (RFC 4616)
  auto decoded = base64Decode(base64 == "=" ? std::string_view{} : base64);
  if (!decoded) {
    errorReply(501, "5.5.2", "Error: cannot decode response");
    return;
  }
  const std::string_view msg = *decoded;
  const std::size_t first = msg.find('\0');
  const std::size_t second = first == std::string_view::npos ? first : msg.find('\0', first + 1);
  if (second == std::string_view::npos || msg.find('\0', second + 1) != std::string_view::npos) {
    errorReply(501, "5.5.2", "Error: malformed PLAIN response");
    return;
  }
  const std::string_view authzid = msg.substr(0, first);
  const std::string_view authcid = msg.substr(first + 1, second - first - 1);
  const std::string_view password = msg.substr(second + 1);
  if (authcid.empty() || password.empty()) {
    errorReply(501, "5.5.2", "Error: malformed PLAIN response");
    return;
  }
  if (!authzid.empty() && authzid != authcid) {
    // Acting as someone else is not offered. Counted like a failed login: it is a probe.
    ++auth_failures_;
    if (auth_failures_ >= options_.max_auth_failures) {
      closeWith(421, "4.7.0", options_.hostname + " Error: too many authentication failures",
                "too many authentication failures");
      return;
    }
    reply(535, "5.7.8", "Error: authorization identity not permitted");
    return;
  }
  requests_.emplace_back(Authenticate{"PLAIN", std::string(authcid), std::string(password)});
  phase_ = Phase::kWaitAuth;
}

void ServerSession::authResult(bool ok, std::string identity) {
  if (phase_ != Phase::kWaitAuth) {
    return;
  }
  phase_ = Phase::kCommand;
  if (ok) {
    identity_ = std::move(identity);
    sasl_done_ = true;
    reply(235, "2.7.0", "Authentication successful");
  } else {
    ++auth_failures_;
    if (auth_failures_ >= options_.max_auth_failures) {
      closeWith(421, "4.7.0", options_.hostname + " Error: too many authentication failures",
                "too many authentication failures");
      return;
    }
    reply(535, "5.7.8", "Error: authentication failed");
  }
  resume();
}

void ServerSession::authUnavailable() {
  if (phase_ != Phase::kWaitAuth) {
    return;
  }
  phase_ = Phase::kCommand;
  reply(454, "4.7.0", "Temporary authentication failure");
  resume();
}

void ServerSession::handleMail(const Command& cmd) {
  if (helo_.empty()) {
    errorReply(503, "5.5.1", "Error: send HELO/EHLO first");
    return;
  }
  if (!identity_) {
    // Never an open relay: only authenticated or trusted clients may submit.
    errorReply(530, "5.7.0", "Authentication required");
    return;
  }
  if (in_transaction_) {
    errorReply(503, "5.5.1", "Error: nested MAIL command");
    return;
  }
  if (!esmtp_ && cmd.mail.any) {
    errorReply(555, "5.5.4", "Error: parameters need EHLO");
    return;
  }
  if (cmd.mail.size && *cmd.mail.size > options_.max_message_bytes) {
    reply(552, "5.3.4", "Message size exceeds fixed maximum message size");
    return;
  }
  if (options_.check_sender) {
    if (auto refusal = options_.check_sender(*identity_, cmd.path.address)) {
      errorReply(refusal->code, refusal->enhanced, refusal->text);
      return;
    }
  }
  in_transaction_ = true;
  mail_from_ = cmd.path.address;
  mail_params_ =
      MessageParams{cmd.mail.smtputf8, cmd.mail.body, cmd.mail.size, cmd.mail.ret, cmd.mail.envid};
  reply(250, "2.1.0", "Ok");
}

void ServerSession::handleRcpt(const Command& cmd) {
  if (!in_transaction_) {
    errorReply(503, "5.5.1", "Error: need MAIL command");
    return;
  }
  rcpt_attempted_ = true;
  if (!esmtp_ && cmd.rcpt.any) {
    errorReply(555, "5.5.4", "Error: parameters need EHLO");
    return;
  }
  if (cmd.path.non_ascii && !mail_params_.smtputf8) {
    errorReply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
    return;
  }
  if (recipients_.size() >= options_.max_recipients) {
    reply(452, "4.5.3", "Error: too many recipients");
    return;
  }
  recipients_.push_back(cmd.path.address);
  reply(250, "2.1.5", "Ok");
}

void ServerSession::handleData() {
  if (!in_transaction_) {
    errorReply(503, "5.5.1", "Error: need MAIL command");
    return;
  }
  if (recipients_.empty()) {
    // With PIPELINING the client sends DATA before it sees its RCPTs fail (RFC 2920 section 3.1).
    if (rcpt_attempted_) {
      reply(554, "5.5.1", "Error: no valid recipients");
    } else {
      errorReply(503, "5.5.1", "Error: need RCPT command");
    }
    return;
  }
  reply(354, "", "End data with <CR><LF>.<CR><LF>");
  decoder_.emplace(options_.max_message_bytes);
  phase_ = Phase::kData;
}

void ServerSession::endOfData() {
  phase_ = Phase::kCommand;
  DataDecoder decoder = std::move(*decoder_);
  decoder_.reset();
  if (decoder.overflowed()) {
    resetTransaction();
    reply(552, "5.3.4", "Message size exceeds fixed maximum message size");
    return;
  }
  if (decoder.sawNul()) {
    resetTransaction();
    reply(554, "5.6.0", "Message contains NUL characters");
    return;
  }
  Message msg;
  msg.mail_from = std::move(mail_from_);
  msg.recipients = std::move(recipients_);
  msg.data = decoder.takeData();
  msg.params = std::move(mail_params_);
  msg.helo = helo_;
  msg.identity = identity_.value_or("");
  msg.tls = tls_active_;
  resetTransaction();
  requests_.emplace_back(std::move(msg));
  phase_ = Phase::kWaitMessage;
}

void ServerSession::messageResult(int code, std::string_view enhanced, std::string_view text) {
  if (phase_ != Phase::kWaitMessage) {
    return;
  }
  phase_ = Phase::kCommand;
  const bool valid_code = (code >= 200 && code < 300) || (code >= 400 && code < 600);
  if (!valid_code || (!enhanced.empty() && (enhancedCodeLength(enhanced) != enhanced.size() ||
                                            enhanced[0] != static_cast<char>('0' + code / 100)))) {
    // A driver bug must not put a malformed or misleading reply on the wire.
    reply(451, "4.3.0", "Error: internal error");
  } else {
    reply(code, enhanced, text);
  }
  resume();
}

void ServerSession::timeout() {
  if (phase_ == Phase::kClosed) {
    return;
  }
  closeWith(421, "4.4.2", options_.hostname + " Error: timeout exceeded", "timeout");
}

void ServerSession::shutdown() {
  shutdown("4.3.2", "Service shutting down");
}

void ServerSession::shutdown(std::string_view enhanced, std::string_view text) {
  if (phase_ == Phase::kClosed) {
    return;
  }
  closeWith(421, enhanced, options_.hostname + " " + std::string(text), "shutdown");
}

void ServerSession::tlsStarted() {
  if (phase_ != Phase::kWaitTls) {
    return;
  }
  tls_active_ = true;
  phase_ = Phase::kCommand;
  helo_.clear();
  esmtp_ = false;
  identity_ = options_.trusted_identity;
  sasl_done_ = false;
  login_user_.clear();
  resetTransaction();
  std::string().swap(line_);
  discarding_ = false;
  std::string().swap(held_);
  flooded_ = false;
}

void ServerSession::resetTransaction() {
  in_transaction_ = false;
  mail_from_.clear();
  mail_params_ = MessageParams{};
  recipients_.clear();
  rcpt_attempted_ = false;
}

void ServerSession::reply(int code, std::string_view enhanced, std::string_view text) {
  out_ += formatReply(code, enhanced, text);
}

void ServerSession::errorReply(int code, std::string_view enhanced, std::string_view text) {
  reply(code, enhanced, text);
  ++errors_;
  if (errors_ >= options_.max_errors && phase_ != Phase::kClosed) {
    closeWith(421, "4.7.0", options_.hostname + " Error: too many errors", "too many errors");
  }
}

void ServerSession::closeWith(int code, std::string_view enhanced, std::string_view text,
                              std::string reason) {
  reply(code, enhanced, text);
  phase_ = Phase::kClosed;
  requests_.emplace_back(Close{std::move(reason)});
  std::string().swap(line_);
  std::string().swap(held_);
  decoder_.reset();
  resetTransaction();
}

} // namespace mailgate::relay::smtp
