#include "relay/smtp/protocol/client_session.h"

#include "base/base64.h"
#include "relay/smtp/protocol/address.h"

#include <algorithm>
#include <utility>

namespace mailgate::relay::smtp {
namespace {

constexpr std::size_t kStuffChunk = 64 * 1024;

RecipientStatus statusOf(const Reply& reply) {
  if (reply.code >= 200 && reply.code < 300) {
    return RecipientStatus::kDelivered;
  }
  return reply.isPermanent() ? RecipientStatus::kPermFailed : RecipientStatus::kTempFailed;
}

bool isOk(const std::optional<Reply>& reply) {
  return reply && reply->code >= 200 && reply->code < 300;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [&](char x, char y) { return lower(x) == lower(y); });
}

void replaceAll(std::string& text, std::string_view needle) {
  if (needle.size() < 3) {
    return; // too short to be told apart from ordinary text; never worth mangling replies
  }
  std::size_t pos = 0;
  while ((pos = text.find(needle, pos)) != std::string::npos) {
    text.replace(pos, needle.size(), "***");
    pos += 3;
  }
}

std::string_view mechanismName(ClientAuth auth) {
  switch (auth) {
  case ClientAuth::kPlain:
    return "PLAIN";
  case ClientAuth::kLogin:
    return "LOGIN";
  case ClientAuth::kXOAuth2:
    return "XOAUTH2";
  case ClientAuth::kNone:
    break;
  }
  return "";
}

bool isToken(std::string_view s) {
  return !s.empty() && s.size() <= 255 && std::all_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c > 32 && c < 127;
  });
}

} // namespace

ClientSession::ClientSession(ClientOptions options)
    : options_(std::move(options)), parser_(options_.reply_limits),
      tls_active_(options_.tls == ClientTls::kImplicit) {
  if (!isToken(options_.ehlo_name)) {
    options_.ehlo_name = "localhost";
  }
}

void ClientSession::receive(std::span<const char> bytes) {
  if (state_ == State::kClosed || state_ == State::kWaitTls) {
    return;
  }
  parser_.feed(std::string_view(bytes.data(), bytes.size()));
  while (state_ != State::kClosed && state_ != State::kWaitTls) {
    auto next = parser_.next();
    if (!next) {
      fail(Error("smtp.protocol", "unreadable reply from server: " + next.error().message), {},
           false);
      return;
    }
    if (!*next) {
      break;
    }
    handleReply(**next);
  }
  if (state_ == State::kWaitTls) {
    // Whatever followed the 220 in plaintext must not be read as if it came over TLS.
    parser_.reset();
  }
}

std::string ClientSession::takeOutput(std::size_t max_bytes) {
  while (streaming_ && out_.size() < max_bytes) {
    const std::string& data = txn_->data;
    const std::size_t n = std::min(kStuffChunk, data.size() - stream_offset_);
    stuffer_.feed(std::string_view(data).substr(stream_offset_, n), out_);
    stream_offset_ += n;
    if (stream_offset_ == data.size()) {
      stuffer_.finish(out_);
      streaming_ = false;
      std::string().swap(txn_->data);
    }
  }
  if (out_.size() <= max_bytes) {
    std::string out = std::move(out_);
    out_.clear();
    return out;
  }
  std::string out = out_.substr(0, max_bytes);
  out_.erase(0, max_bytes);
  return out;
}

std::optional<ClientSession::Event> ClientSession::nextEvent() {
  if (events_.empty()) {
    return std::nullopt;
  }
  Event e = std::move(events_.front());
  events_.pop_front();
  return e;
}

void ClientSession::tlsStarted() {
  if (state_ != State::kWaitTls) {
    return;
  }
  tls_active_ = true;
  parser_.reset();
  caps_ = EhloCapabilities{};
  sendCommand("EHLO " + options_.ehlo_name);
  state_ = State::kEhlo;
}

void ClientSession::sendCommand(std::string_view line) {
  out_.append(line);
  out_ += "\r\n";
}

void ClientSession::handleReply(const Reply& reply) {
  if (state_ == State::kQuit) {
    if (reply.code == 221) {
      state_ = State::kClosed;
      events_.emplace_back(Closed{});
    }
    return; // replies to commands pipelined before QUIT
  }
  if (reply.code == 421) {
    fail(Error("smtp.service_unavailable", "server closed the session: " + redact(reply.describe()),
               "the server is shutting down or limiting connections; mail is retried later"),
         reply, false);
    return;
  }
  switch (state_) {
  case State::kGreeting:
  case State::kEhlo:
  case State::kHelo:
  case State::kStartTls:
    handleHandshakeReply(reply);
    return;
  case State::kAuth:
    handleAuthReply(reply);
    return;
  case State::kTransaction:
    handleTransactionReply(reply);
    return;
  case State::kReady:
    fail(Error("smtp.protocol", "unexpected reply from server: " + redact(reply.describe())), reply,
         true);
    return;
  case State::kWaitTls:
  case State::kQuit:
  case State::kClosed:
    return;
  }
}

void ClientSession::handleHandshakeReply(const Reply& reply) {
  const bool ok = reply.code >= 200 && reply.code < 300;
  switch (state_) {
  case State::kGreeting:
    if (!ok) {
      fail(Error("smtp.greeting_rejected", "server refused the session: " + reply.describe()),
           reply, true);
      return;
    }
    sendCommand("EHLO " + options_.ehlo_name);
    state_ = State::kEhlo;
    return;
  case State::kEhlo:
    if (ok) {
      caps_ = parseEhloCapabilities(reply);
      afterEhlo();
    } else if (reply.isPermanent()) {
      sendCommand("HELO " + options_.ehlo_name);
      state_ = State::kHelo;
    } else {
      fail(Error("smtp.ehlo_failed", "server refused EHLO: " + reply.describe()), reply, true);
    }
    return;
  case State::kHelo:
    if (!ok) {
      fail(Error("smtp.ehlo_failed", "server refused EHLO and HELO: " + reply.describe()), reply,
           true);
      return;
    }
    caps_ = EhloCapabilities{};
    afterEhlo();
    return;
  case State::kStartTls:
    if (reply.code != 220) {
      fail(Error("smtp.starttls_failed", "server refused STARTTLS: " + reply.describe()), reply,
           true);
      return;
    }
    state_ = State::kWaitTls;
    events_.emplace_back(StartTls{});
    return;
  default:
    return;
  }
}

void ClientSession::afterEhlo() {
  if (options_.tls == ClientTls::kStartTls && !tls_active_) {
    if (!caps_.starttls) {
      fail(Error("smtp.starttls_unavailable", "server does not offer STARTTLS",
                 "the relay is configured with tls: starttls; never falls back to plaintext"),
           {}, true);
      return;
    }
    sendCommand("STARTTLS");
    state_ = State::kStartTls;
    return;
  }
  if (options_.auth != ClientAuth::kNone && !authenticated_) {
    const std::string_view mech = mechanismName(options_.auth);
    if (caps_.hasAuthMechanism(mech)) {
      startAuth();
      return;
    }
    if (options_.require_auth) {
      fail(Error("smtp.auth_unavailable",
                 caps_.auth ? "server does not offer AUTH " + std::string(mech)
                            : std::string("SMTP AUTH extension not supported by server"),
                 "enable authenticated SMTP (SMTP AUTH) for this mailbox or relay, or change "
                 "the configured auth method"),
           {}, true);
      return;
    }
  }
  becomeReady();
}

void ClientSession::startAuth() {
  state_ = State::kAuth;
  switch (options_.auth) {
  case ClientAuth::kPlain: {
    std::string blob;
    blob += '\0';
    blob += options_.username;
    blob += '\0';
    blob += options_.password;
    sendCommand("AUTH PLAIN " + base64Encode(blob));
    auth_step_ = AuthStep::kFinal;
    return;
  }
  case ClientAuth::kLogin:
    sendCommand("AUTH LOGIN");
    auth_step_ = AuthStep::kLoginUser;
    return;
  case ClientAuth::kXOAuth2: {
    const std::string blob =
        "user=" + options_.username + "\x01" + "auth=Bearer " + options_.password + "\x01\x01";
    sendCommand("AUTH XOAUTH2 " + base64Encode(blob));
    auth_step_ = AuthStep::kFinal;
    return;
  }
  case ClientAuth::kNone:
    becomeReady();
    return;
  }
}

void ClientSession::handleAuthReply(const Reply& reply) {
  if (reply.code == 334) {
    switch (auth_step_) {
    case AuthStep::kLoginUser:
      sendCommand(base64Encode(options_.username));
      auth_step_ = AuthStep::kLoginPass;
      return;
    case AuthStep::kLoginPass:
      sendCommand(base64Encode(options_.password));
      auth_step_ = AuthStep::kFinal;
      return;
    case AuthStep::kFinal:
      if (options_.auth == ClientAuth::kXOAuth2) {
        // The server's error challenge (base64 JSON); an empty response fetches the 5xx.
        sendCommand("");
        auth_step_ = AuthStep::kXOAuth2Error;
      } else {
        sendCommand("*");
        auth_step_ = AuthStep::kCancelled;
      }
      return;
    case AuthStep::kXOAuth2Error:
    case AuthStep::kCancelled:
      break;
    }
  } else if (reply.code >= 200 && reply.code < 300 && auth_step_ == AuthStep::kFinal) {
    authenticated_ = true;
    becomeReady();
    return;
  }
  const bool temporary = reply.isTransient();
  fail(Error(temporary ? "smtp.auth_temp_failed" : "smtp.auth_failed",
             "server rejected authentication: " + redact(reply.describe()),
             temporary ? "the server could not check the credentials now; retried later"
                       : "check the username and password (or token), and that authenticated "
                         "SMTP is enabled for the mailbox"),
       reply, true);
}

void ClientSession::becomeReady() {
  state_ = State::kReady;
  events_.emplace_back(Ready{caps_, tls_active_, authenticated_});
}

std::string ClientSession::mailCommand() const {
  const Envelope& env = txn_->envelope;
  std::string line = "MAIL FROM:<" + env.mail_from + ">";
  if (caps_.size) {
    line += " SIZE=" + std::to_string(txn_->data.size());
  }
  if (env.body_8bit && caps_.eight_bit_mime) {
    line += " BODY=8BITMIME";
  }
  if (env.smtputf8) {
    line += " SMTPUTF8";
  }
  return line;
}

Result<void> ClientSession::send(const Envelope& envelope, std::string_view data) {
  if (state_ != State::kReady) {
    return mailgate::fail("smtp.not_ready", "the SMTP session is not ready for a message");
  }
  if (envelope.recipients.empty()) {
    return mailgate::fail("smtp.no_recipients", "a message needs at least one recipient");
  }
  if (!envelope.mail_from.empty() && !isValidMailbox(envelope.mail_from, envelope.smtputf8)) {
    return mailgate::fail("smtp.bad_address", "invalid envelope sender address");
  }
  for (const std::string& rcpt : envelope.recipients) {
    if (!isValidMailbox(rcpt, envelope.smtputf8) && !equalsIgnoreCase(rcpt, "postmaster")) {
      return mailgate::fail("smtp.bad_address", "invalid envelope recipient address");
    }
  }
  if (envelope.smtputf8 && !caps_.smtputf8) {
    return mailgate::fail("smtp.smtputf8_unsupported",
                          "the message needs SMTPUTF8, which the server does not offer");
  }
  if (caps_.size && caps_.max_size > 0 && data.size() > caps_.max_size) {
    return mailgate::fail("smtp.message_too_large",
                          "the message is larger than the server's SIZE limit of " +
                              std::to_string(caps_.max_size) + " bytes");
  }
  txn_.emplace();
  txn_->envelope = envelope;
  txn_->data = std::string(data);
  txn_->rcpt_replies.resize(envelope.recipients.size());
  state_ = State::kTransaction;
  expected_.clear();
  if (must_reset_) {
    sendCommand("RSET");
    expected_.push_back(Expect::kRset);
    must_reset_ = false;
    if (!caps_.pipelining) {
      return {};
    }
  }
  if (!caps_.pipelining) {
    sendNextLockstep();
    return {};
  }
  // RFC 2920: MAIL, every RCPT and DATA in one group; the body waits for the 354.
  sendCommand(mailCommand());
  expected_.push_back(Expect::kMail);
  for (const std::string& rcpt : envelope.recipients) {
    sendCommand("RCPT TO:<" + rcpt + ">");
    expected_.push_back(Expect::kRcpt);
  }
  txn_->next_rcpt = envelope.recipients.size();
  sendCommand("DATA");
  expected_.push_back(Expect::kData);
  return {};
}

void ClientSession::sendNextLockstep() {
  detail::ClientTransaction& t = *txn_;
  if (!t.mail_reply) {
    sendCommand(mailCommand());
    expected_.push_back(Expect::kMail);
  } else if (t.next_rcpt < t.envelope.recipients.size()) {
    sendCommand("RCPT TO:<" + t.envelope.recipients[t.next_rcpt] + ">");
    ++t.next_rcpt;
    expected_.push_back(Expect::kRcpt);
  } else {
    sendCommand("DATA");
    expected_.push_back(Expect::kData);
  }
}

void ClientSession::handleTransactionReply(const Reply& reply) {
  if (expected_.empty()) {
    fail(Error("smtp.protocol", "unexpected reply from server: " + redact(reply.describe())), reply,
         true);
    return;
  }
  const Expect expect = expected_.front();
  expected_.pop_front();
  detail::ClientTransaction& t = *txn_;
  const bool lockstep = !caps_.pipelining;
  const std::size_t n = t.envelope.recipients.size();
  switch (expect) {
  case Expect::kRset:
    if (lockstep) {
      sendNextLockstep();
    }
    return;
  case Expect::kMail:
    t.mail_reply = reply;
    if (lockstep) {
      if (isOk(t.mail_reply)) {
        sendNextLockstep();
      } else {
        finishTransaction({}, {});
      }
    }
    // Pipelined: the RCPT and DATA replies are still to come, whatever happened.
    return;
  case Expect::kRcpt: {
    if (t.rcpt_answered < n) {
      t.rcpt_replies[t.rcpt_answered] = reply;
    }
    ++t.rcpt_answered;
    if (isOk(std::optional<Reply>(reply))) {
      ++t.accepted;
    }
    if (lockstep) {
      if (t.next_rcpt < n) {
        sendNextLockstep();
      } else if (t.accepted == 0) {
        // The server still holds the MAIL: reset before the next transaction.
        must_reset_ = true;
        finishTransaction({}, {});
      } else {
        sendNextLockstep();
      }
    }
    return;
  }
  case Expect::kData:
    t.data_reply = reply;
    if (reply.code == 354) {
      if (isOk(t.mail_reply) && t.accepted > 0) {
        streaming_ = true;
        stream_offset_ = 0;
        stuffer_ = DotStuffer{};
      } else {
        // The server took DATA although nothing valid preceded it: end the empty body now.
        sendCommand(".");
        t.sent_dummy_end = true;
      }
      expected_.push_back(Expect::kDataEnd);
      return;
    }
    if (isOk(t.mail_reply)) {
      must_reset_ = true;
    }
    finishTransaction({}, {});
    return;
  case Expect::kDataEnd: {
    t.final_reply = reply;
    const bool early = streaming_;
    finishTransaction({}, {});
    if (early) {
      // The server answered before the end of data: what we still send would be read as
      // commands, so the connection cannot be used any more.
      fail(Error("smtp.protocol", "server replied before the end of data"), reply, false);
    }
    return;
  }
  }
}

void ClientSession::finishTransaction(std::optional<Error> error, std::optional<Reply> cause) {
  detail::ClientTransaction& t = *txn_;
  MessageResult result;
  const bool mail_ok = isOk(t.mail_reply);
  const bool have_final = t.final_reply && !t.sent_dummy_end;
  const std::size_t n = t.envelope.recipients.size();
  std::size_t delivered = 0;
  bool any_temp = false;
  for (std::size_t i = 0; i < n; ++i) {
    RecipientResult r;
    r.address = t.envelope.recipients[i];
    const std::optional<Reply>& rcpt = t.rcpt_replies[i];
    if (t.mail_reply && !mail_ok) {
      r.reply = *t.mail_reply;
      r.status = statusOf(r.reply);
      if (r.status == RecipientStatus::kDelivered) {
        r.status = RecipientStatus::kTempFailed;
      }
    } else if (rcpt && !isOk(rcpt)) {
      r.reply = *rcpt;
      r.status = statusOf(r.reply);
    } else if (rcpt && have_final) {
      r.reply = *t.final_reply;
      r.status = statusOf(r.reply);
    } else if (rcpt && t.data_reply && t.data_reply->code != 354) {
      r.reply = *t.data_reply;
      r.status = statusOf(r.reply);
      if (r.status == RecipientStatus::kDelivered) {
        r.status = RecipientStatus::kTempFailed; // a 2xx to DATA is not a delivery
      }
    } else {
      r.status = RecipientStatus::kTempFailed;
      if (cause) {
        r.reply = *cause;
      }
    }
    if (r.status == RecipientStatus::kDelivered) {
      ++delivered;
    } else if (r.status == RecipientStatus::kTempFailed) {
      any_temp = true;
    }
    result.recipients.push_back(std::move(r));
  }
  if (delivered == n) {
    result.outcome = MessageOutcome::kDelivered;
  } else if (delivered > 0) {
    result.outcome = MessageOutcome::kPartial;
  } else {
    result.outcome = any_temp ? MessageOutcome::kTempFailed : MessageOutcome::kPermFailed;
  }
  result.mail_reply = t.mail_reply;
  if (have_final) {
    result.final_reply = t.final_reply;
  } else if (t.data_reply && t.data_reply->code != 354) {
    result.final_reply = t.data_reply;
  }
  result.error = std::move(error);
  const bool failed_connection = result.error.has_value();
  events_.emplace_back(std::move(result));
  txn_.reset();
  expected_.clear();
  streaming_ = false;
  if (!failed_connection) {
    becomeReady();
  }
}

void ClientSession::quit() {
  if (state_ == State::kClosed || state_ == State::kQuit) {
    return;
  }
  const bool body_possible =
      streaming_ || std::any_of(expected_.begin(), expected_.end(), [](Expect e) {
        return e == Expect::kData || e == Expect::kDataEnd;
      });
  if (state_ == State::kWaitTls || (state_ == State::kTransaction && body_possible)) {
    // Mid-handshake, or once DATA may have been accepted, a QUIT would be read as TLS bytes or
    // as message content.
    fail(Error("smtp.aborted", "session closed during a TLS handshake or a message body"), {},
         false);
    return;
  }
  if (txn_) {
    finishTransaction(Error("smtp.aborted", "transaction abandoned by quit()"), {});
  }
  sendCommand("QUIT");
  state_ = State::kQuit;
}

void ClientSession::connectionLost(Error error) {
  if (state_ == State::kClosed) {
    return;
  }
  if (state_ == State::kQuit) {
    state_ = State::kClosed;
    events_.emplace_back(Closed{});
    return;
  }
  fail(Error("smtp.connection_lost", error.message, error.hint), {}, false);
}

void ClientSession::fail(Error error, std::optional<Reply> reply, bool send_quit) {
  if (reply) {
    for (std::string& line : reply->lines) {
      line = redact(std::move(line));
    }
  }
  if (txn_) {
    finishTransaction(error, reply);
  }
  if (send_quit && state_ != State::kWaitTls && !streaming_) {
    sendCommand("QUIT");
  }
  streaming_ = false;
  expected_.clear();
  state_ = State::kClosed;
  events_.emplace_back(Closed{std::move(error), std::move(reply)});
}

std::string ClientSession::redact(std::string text) const {
  if (options_.password.empty() && options_.username.empty()) {
    return text;
  }
  // A server that echoes what it was sent must not leak the secret into logs through us.
  std::string plain;
  plain += '\0';
  plain += options_.username;
  plain += '\0';
  plain += options_.password;
  replaceAll(text, base64Encode(plain));
  replaceAll(text, base64Encode("user=" + options_.username + "\x01" + "auth=Bearer " +
                                options_.password + "\x01\x01"));
  replaceAll(text, base64Encode(options_.password));
  replaceAll(text, options_.password);
  return text;
}

} // namespace mailgate::relay::smtp
