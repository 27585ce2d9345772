// The delivery side's SMTP state machine: one per upstream connection, many messages per
// connection. Sans-IO like ServerSession: the driver feeds what it read, pulls what to write, and
// reacts to events. Handles greeting, EHLO (HELO fallback), STARTTLS, AUTH PLAIN/LOGIN/XOAUTH2,
// PIPELINING (RFC 2920) and per-recipient results.
//
// Contract with the driver, after every call (receive, tlsStarted, send, quit, connectionLost):
//   1. write takeOutput() (it may be pulled in pieces with a size bound while the message body is
//      streamed; hasOutput() says whether more is waiting);
//   2. drain nextEvent():
//      - StartTls: flush the output, run the TLS client handshake, then call tlsStarted();
//      - Ready: send() may be called;
//      - MessageResult: the outcome of the last send();
//      - Closed: flush the output (it may hold a QUIT), then close the connection. Nothing more
//        is processed.
// Events are queued in the order things happened, so a Ready may be followed by a Closed that
// was caused by bytes fed in the same receive() call; send() then fails with "smtp.not_ready".
// Credentials from the options are only ever written to the wire; no error message, event or
// Reply::describe() produced here contains them. Not thread-safe; no callbacks.
#pragma once

#include "base/error.h"
#include "relay/smtp/protocol/dot_stuffer.h"
#include "relay/smtp/protocol/ehlo.h"
#include "relay/smtp/protocol/reply.h"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace mailgate::relay::smtp {

enum class ClientTls {
  kNone,
  kStartTls, // STARTTLS is mandatory: a server without it is an error, never a downgrade
  kImplicit, // the driver completes TLS before the greeting
};

enum class ClientAuth {
  kNone,
  kPlain,
  kLogin,
  kXOAuth2,
};

struct ClientOptions {
  std::string ehlo_name = "localhost"; // must be one printable token; else "localhost" is used
  ClientTls tls = ClientTls::kNone;
  ClientAuth auth = ClientAuth::kNone;
  std::string username;
  std::string password; // the password, or the OAuth2 access token for XOAUTH2. Secret.
  // With auth configured: a server that does not offer the mechanism is an error
  // ("smtp.auth_unavailable") rather than a reason to send unauthenticated.
  bool require_auth = true;
  ReplyParser::Limits reply_limits{};
};

struct Envelope {
  std::string mail_from; // empty for the null sender
  std::vector<std::string> recipients;
  bool smtputf8 = false;  // addresses or headers need SMTPUTF8
  bool body_8bit = false; // ask for BODY=8BITMIME when offered
};

enum class RecipientStatus {
  kDelivered,
  kTempFailed,
  kPermFailed,
};

enum class MessageOutcome {
  kDelivered,  // every recipient accepted the message
  kPartial,    // some delivered, some failed (see each recipient's status)
  kTempFailed, // none delivered and at least one may be retried
  kPermFailed, // none delivered and none may be retried as is
};

struct RecipientResult {
  std::string address;
  RecipientStatus status = RecipientStatus::kTempFailed;
  // The reply that decided this recipient: its RCPT reply when that failed, else the final reply
  // (or the MAIL / DATA reply that failed the whole message). code == 0 when the connection failed
  // before any reply decided it.
  Reply reply;
};

namespace detail {

// One message in flight (outside ClientSession so that std::optional can see it complete).
struct ClientTransaction {
  Envelope envelope;
  std::string data;
  std::optional<Reply> mail_reply;
  std::vector<std::optional<Reply>> rcpt_replies;
  std::optional<Reply> data_reply;  // to the DATA command
  std::optional<Reply> final_reply; // to the end of data
  std::size_t next_rcpt = 0;        // lock-step: next RCPT to send
  std::size_t rcpt_answered = 0;
  std::size_t accepted = 0;
  bool sent_dummy_end = false; // 354 with nothing to send: an empty body was ended
};

} // namespace detail

class ClientSession {
public:
  // Events.

  // The 220 to STARTTLS arrived: flush, run the TLS handshake, call tlsStarted().
  struct StartTls {};

  // The session is idle and may take send(). Sent after the handshake and after every message.
  struct Ready {
    EhloCapabilities capabilities;
    bool tls = false;
    bool authenticated = false;
  };

  struct MessageResult {
    MessageOutcome outcome = MessageOutcome::kTempFailed;
    std::vector<RecipientResult> recipients; // in the order of Envelope::recipients
    std::optional<Reply> mail_reply;
    // The reply to the end of data, or to DATA itself when that failed.
    std::optional<Reply> final_reply;
    // Set when the message failed because the connection did (421, loss, garbled replies).
    std::optional<Error> error;
  };

  // The session is over. `error` is empty after an orderly quit(). Codes:
  // "smtp.greeting_rejected", "smtp.ehlo_failed", "smtp.starttls_unavailable",
  // "smtp.starttls_failed", "smtp.auth_unavailable", "smtp.auth_failed",
  // "smtp.auth_temp_failed", "smtp.service_unavailable" (421), "smtp.protocol",
  // "smtp.connection_lost", "smtp.aborted".
  struct Closed {
    std::optional<Error> error;
    std::optional<Reply> reply; // the server reply that caused it, if any
  };

  using Event = std::variant<StartTls, Ready, MessageResult, Closed>;

  explicit ClientSession(ClientOptions options);

  // Bytes from the server, split anywhere.
  void receive(std::span<const char> bytes);

  // Up to `max_bytes` of what is to be written. Message bodies are dot-stuffed lazily here, so a
  // driver that pulls bounded pieces keeps memory to about one copy of the message.
  [[nodiscard]] std::string
  takeOutput(std::size_t max_bytes = std::numeric_limits<std::size_t>::max());
  [[nodiscard]] bool hasOutput() const { return !out_.empty() || streaming_; }

  [[nodiscard]] std::optional<Event> nextEvent();

  // The TLS handshake requested by StartTls completed: EHLO is sent again.
  void tlsStarted();

  // Starts a transaction. Only after Ready (and before the MessageResult). The data is copied.
  // Fails without touching the connection with "smtp.not_ready", "smtp.bad_address" (an address
  // that is not a valid mailbox, which also stops command injection), "smtp.no_recipients",
  // "smtp.smtputf8_unsupported" or "smtp.message_too_large" (over the server's SIZE).
  Result<void> send(const Envelope& envelope, std::string_view data);

  // Sends QUIT; Closed follows the 221 (or connectionLost()). A message in flight is reported
  // as temp-failed with "smtp.aborted".
  void quit();

  // The transport failed or the peer closed. A message in flight is reported as temp-failed
  // ("smtp.connection_lost"; it may still have been delivered if the data had been sent), then
  // Closed. A close after QUIT is orderly.
  void connectionLost(Error error);

  [[nodiscard]] bool ready() const { return state_ == State::kReady; }
  [[nodiscard]] bool closed() const { return state_ == State::kClosed; }
  [[nodiscard]] bool tlsActive() const { return tls_active_; }
  [[nodiscard]] const EhloCapabilities& capabilities() const { return caps_; }

private:
  enum class State {
    kGreeting,
    kEhlo,
    kHelo,
    kStartTls,
    kWaitTls,
    kAuth,
    kReady,
    kTransaction,
    kQuit,
    kClosed,
  };

  enum class AuthStep {
    kFinal,        // waiting for 235
    kLoginUser,    // waiting for the 334 that asks for the username
    kLoginPass,    // waiting for the 334 that asks for the password
    kXOAuth2Error, // sent the empty response to the error challenge; waiting for 5xx
    kCancelled,    // sent "*"; waiting for the 501
  };

  enum class Expect {
    kRset,
    kMail,
    kRcpt,
    kData,
    kDataEnd,
  };

  void handleReply(const Reply& reply);
  void handleHandshakeReply(const Reply& reply);
  void handleAuthReply(const Reply& reply);
  void handleTransactionReply(const Reply& reply);
  void afterEhlo();
  void startAuth();
  void becomeReady();
  void sendCommand(std::string_view line);
  void sendNextLockstep();
  void startData();
  // Reports the transaction. `error` set: the connection failed, and `cause` (if any) is the
  // reply that said so; Ready is then not emitted.
  void finishTransaction(std::optional<Error> error, std::optional<Reply> cause);
  void fail(Error error, std::optional<Reply> reply, bool send_quit);
  [[nodiscard]] std::string redact(std::string text) const;
  [[nodiscard]] std::string mailCommand() const;

  ClientOptions options_;
  State state_ = State::kGreeting;
  AuthStep auth_step_ = AuthStep::kFinal;
  ReplyParser parser_;
  std::string out_;
  std::deque<Event> events_;
  EhloCapabilities caps_;
  bool tls_active_ = false;
  bool authenticated_ = false;
  bool must_reset_ = false; // the server may still hold a transaction: RSET before MAIL
  std::deque<Expect> expected_;
  std::optional<detail::ClientTransaction> txn_;
  bool streaming_ = false;
  std::size_t stream_offset_ = 0;
  DotStuffer stuffer_;
};

} // namespace mailgate::relay::smtp
