// The submission server's SMTP state machine (RFC 5321 with PIPELINING, SIZE, 8BITMIME,
// SMTPUTF8, ENHANCEDSTATUSCODES, STARTTLS and AUTH PLAIN/LOGIN). Sans-IO: the driver feeds the
// bytes it read, pulls the bytes to write, and serves the requests the session makes (TLS upgrade,
// credential checks, durable commit, close). No sockets, no clocks, no threads: the driver owns
// the timeouts and tells the session when one fires.
//
// Contract with the driver, after every call that can make progress (greet, receive, tlsStarted,
// authResult, authUnavailable, messageResult, timeout, shutdown):
//   1. write takeOutput() (replies are batched, so pipelined commands get one write);
//   2. drain nextRequest() and act on each request;
//   3. while waitingForDriver() the session holds input instead of processing it, so the driver
//      should stop reading (it may keep feeding; up to max_held_bytes are kept, more is a protocol
//      violation answered with 421 once the pending request is answered).
// Not thread-safe; every call for a session comes from the loop thread that owns its connection.
// No method calls back into the driver.
#pragma once

#include "relay/smtp/protocol/command.h"
#include "relay/smtp/protocol/data_decoder.h"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace mailgate::relay::smtp {

enum class SaslMechanism {
  kPlain,
  kLogin,
};

// A policy decision that refuses a command, as the reply to send.
struct PolicyRefusal {
  int code = 550;
  std::string enhanced = "5.7.1";
  std::string text;
};

struct ServerOptions {
  std::string hostname = "localhost"; // in the greeting, EHLO reply and 421 replies
  // Longest command line, without CRLF. RFC 5321 asks for at least 512; AUTH PLAIN with an
  // initial response needs more (RFC 4954 suggests allowing 12288).
  std::size_t max_line_length = 4096;
  std::uint64_t max_message_bytes = 25u * 1024 * 1024; // advertised with SIZE
  std::size_t max_recipients = 100;
  bool tls_available = false; // offer STARTTLS
  bool tls_active = false;    // the connection is already TLS (implicit TLS listener)
  bool require_tls = false;   // nothing but EHLO/HELO/STARTTLS/NOOP/RSET/QUIT before TLS
  std::vector<SaslMechanism> auth_mechanisms = {SaslMechanism::kPlain, SaslMechanism::kLogin};
  // Set for connections from a trusted network: the session starts authenticated as this
  // identity and MAIL is allowed without AUTH.
  std::optional<std::string> trusted_identity;
  // Sender policy, asked at MAIL FROM with the session's identity and the reverse-path (empty
  // for <>). A refusal is sent as the reply (and counts as an error towards max_errors); nothing
  // of the transaction is kept. Unset: every sender is accepted.
  std::function<std::optional<PolicyRefusal>(std::string_view identity, std::string_view mail_from)>
      check_sender;
  int max_auth_failures = 3;              // then 421 and Close
  int max_errors = 10;                    // 5xx protocol errors, then 421 and Close
  std::size_t max_held_bytes = 64 * 1024; // input kept while waiting for the driver
};

class ServerSession {
public:
  // Requests to the driver.

  // The 220 to STARTTLS is in the output: flush it, run the TLS handshake on the connection, then
  // call tlsStarted(). Input fed before tlsStarted() is discarded (it was sent in plaintext after
  // the STARTTLS line; RFC 3207 section 6 and CVE-2011-0411-style injection).
  struct StartTls {};

  // Check these credentials and call authResult(). `password` is a secret: never log it.
  struct Authenticate {
    std::string mechanism; // "PLAIN" or "LOGIN"
    std::string username;
    std::string password;
  };

  struct MessageParams {
    bool smtputf8 = false;
    BodyType body = BodyType::kUnspecified;
    std::optional<std::uint64_t> declared_size; // the client's SIZE= estimate
    std::string ret;                            // DSN RET, when given
    std::string envid;                          // DSN ENVID, when given
  };

  // End of DATA: commit durably, then call messageResult() with the reply to send (250 only once
  // the commit is durable).
  struct Message {
    std::string mail_from; // empty for the null sender
    std::vector<std::string> recipients;
    std::string data; // unstuffed, every line ending CRLF
    MessageParams params;
    std::string helo;     // the client's EHLO/HELO name, for trace headers
    std::string identity; // authenticated (or trusted) identity
    bool tls = false;     // received over TLS
  };

  // Flush the output, then close the connection. Nothing more will be processed.
  struct Close {
    std::string reason; // for logs: "quit", "too many errors", ...
  };

  using Request = std::variant<StartTls, Authenticate, Message, Close>;

  explicit ServerSession(ServerOptions options);

  // Queues the 220 greeting. Call once, when the connection is accepted (for implicit TLS, after
  // the handshake).
  void greet();

  // Processes every complete command line in `bytes` (and what was held before), in order, until
  // one needs the driver. Never fails: protocol errors become replies.
  void receive(std::span<const char> bytes);

  // All reply bytes produced since the last call.
  [[nodiscard]] std::string takeOutput();
  [[nodiscard]] bool hasOutput() const { return !out_.empty(); }

  // The next request for the driver, oldest first.
  [[nodiscard]] std::optional<Request> nextRequest();

  // The TLS handshake after StartTls succeeded. Resets the session to its state before EHLO
  // (RFC 3207 section 4.2): the client must send EHLO again. A trusted identity is kept, since it
  // came from the network address and not from the client.
  void tlsStarted();

  // Verdict for an Authenticate request. `identity` is who the session acts for from now on
  // (normally the username). A failure counts towards max_auth_failures.
  void authResult(bool ok, std::string identity);
  // The credential check could not be made (store down): 454 4.7.0, not counted as a failure.
  void authUnavailable();

  // Reply for a Message request, e.g. (250, "2.0.0", "Ok: queued as 42"), (451, "4.3.0", ...),
  // (452, "4.3.1", ...), (554, "5.7.1", ...). `text` may hold '\n' for a multi-line reply.
  void messageResult(int code, std::string_view enhanced, std::string_view text);

  // The driver's idle timer fired: 421 4.4.2 and Close.
  void timeout();
  // The server is draining: 421 4.3.2 and Close. Call it between messages, not while a Message
  // request is pending.
  void shutdown();
  // The same with another reason: "421 <enhanced> <hostname> <text>" and Close.
  void shutdown(std::string_view enhanced, std::string_view text);

  // In the DATA phase (the driver may use the longer data timeout of RFC 5321 section 4.5.3.2).
  [[nodiscard]] bool inData() const { return phase_ == Phase::kData; }
  // A request is outstanding and input is being held (or discarded, for StartTls).
  [[nodiscard]] bool waitingForDriver() const {
    return phase_ == Phase::kWaitTls || phase_ == Phase::kWaitAuth || phase_ == Phase::kWaitMessage;
  }
  [[nodiscard]] bool closed() const { return phase_ == Phase::kClosed; }
  [[nodiscard]] bool tlsActive() const { return tls_active_; }
  // Bytes buffered for a partial command line or held for later: bounded by max_line_length + 1
  // plus max_held_bytes whatever the client sends. For tests and metrics.
  [[nodiscard]] std::size_t bufferedBytes() const { return line_.size() + held_.size(); }
  // Who the client is, once authenticated (or trusted).
  [[nodiscard]] const std::optional<std::string>& identity() const { return identity_; }

private:
  enum class Phase {
    kCommand,
    kAuthPlain,     // waiting for the PLAIN response after "334 "
    kAuthLoginUser, // waiting for the base64 username
    kAuthLoginPass, // waiting for the base64 password
    kData,
    kWaitTls,
    kWaitAuth,
    kWaitMessage,
    kClosed,
  };

  std::size_t consume(std::string_view in);
  void hold(std::string_view rest);
  void resume();
  void handleLine(std::string_view raw);
  void handleCommand(std::string_view line);
  void handleSaslResponse(std::string_view line);
  void handleEhlo(const Command& cmd, bool extended);
  void handleAuth(const Command& cmd);
  void handleMail(const Command& cmd);
  void handleRcpt(const Command& cmd);
  void handleData();
  void plainResponse(std::string_view base64);
  void endOfData();
  void lineTooLong();
  void resetTransaction();
  void reply(int code, std::string_view enhanced, std::string_view text);
  // A reply that counts towards max_errors.
  void errorReply(int code, std::string_view enhanced, std::string_view text);
  void closeWith(int code, std::string_view enhanced, std::string_view text, std::string reason);
  [[nodiscard]] bool offersAuth() const;

  ServerOptions options_;
  Phase phase_ = Phase::kCommand;
  std::string out_;
  std::deque<Request> requests_;
  std::string line_;        // the partial command line, at most max_line_length + 1 bytes
  bool discarding_ = false; // dropping the rest of an overlong line
  std::string held_;        // input received while waiting for the driver
  bool flooded_ = false;    // more than max_held_bytes arrived while waiting

  std::string helo_;
  bool esmtp_ = false;
  bool tls_active_ = false;
  std::optional<std::string> identity_;
  bool sasl_done_ = false;
  int auth_failures_ = 0;
  int errors_ = 0;
  std::string login_user_;

  bool in_transaction_ = false;
  std::string mail_from_;
  MessageParams mail_params_;
  std::vector<std::string> recipients_;
  bool rcpt_attempted_ = false;
  std::optional<DataDecoder> decoder_;
};

} // namespace mailgate::relay::smtp
