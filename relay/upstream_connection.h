// One outbound SMTP connection: binds the sans-IO smtp::ClientSession to a net::Connection. It
// fetches an OAuth2 token when XOAUTH2 is configured, connects (implicit TLS through the
// connector, STARTTLS through Connection::startTls), streams message bodies with a bounded
// amount in the socket's write buffer, and watches for an upstream that stops answering.
// It knows nothing about the queue: the DeliveryEngine decides what to send and records outcomes.
//
// Threading: loop thread only. Re-entrancy: the Observer is never called from inside a call made
// on this object (start, send, quit, the destructor); it is called from net/ callbacks and from
// deferred functions only. The Observer may destroy this object from inside any of its methods.
#pragma once

#include "base/error.h"
#include "base/token_source.h"
#include "net/connection.h"
#include "net/connector.h"
#include "net/endpoint.h"
#include "net/timer.h"
#include "net/tls_context.h"
#include "relay/smtp/protocol/client_session.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <spdlog/logger.h>
#include <string>
#include <string_view>

namespace mailgate::net {
class Loop;
}

namespace mailgate::relay {

// How long we wait for the upstream. Each counts from the last byte that moved in either
// direction, so a large body on a slow link never times out while it is still flowing.
struct UpstreamTimeouts {
  // TCP connect (name resolution and every address included), then the TLS handshake.
  std::chrono::milliseconds connect{std::chrono::seconds(30)};
  // Waiting for the greeting or any reply during the handshake or a transaction (RFC 5321
  // section 4.5.3.2 asks for 5 minutes for most commands).
  std::chrono::milliseconds reply{std::chrono::minutes(5)};
  // Waiting for the reply to the final "." (RFC 5321 section 4.5.3.2.6: 10 minutes). Giving up
  // earlier makes duplicates likelier: the server may still be accepting the message.
  std::chrono::milliseconds data_end{std::chrono::minutes(10)};
  // Waiting for the 221 after QUIT; the mail is already settled, so this is short.
  std::chrono::milliseconds quit{std::chrono::seconds(10)};
};

struct UpstreamSettings {
  uint64_t id = 0;   // unique per process, "conn=u<id>" on log lines (u: upstream, apart from the
                     // submission side's ids)
  std::string relay; // relay name, for log lines
  net::Endpoint endpoint;
  std::string bind_address; // egress.bind_address; empty: the kernel chooses
  // Client context for TLS, required when client.tls is kImplicit or kStartTls.
  net::TlsContextPtr tls;
  // Session options. For XOAUTH2 with a token_source, `password` is filled with a fresh token
  // before each connect.
  smtp::ClientOptions client;
  std::shared_ptr<TokenSource> token_source;
  UpstreamTimeouts timeouts;
};

class UpstreamConnection : private net::Connection::Handler {
public:
  class Observer {
  public:
    virtual ~Observer() = default;
    // The session is idle: send() may be called (from here or later). After the handshake and
    // after every message that did not end the connection.
    virtual void onUpstreamReady(UpstreamConnection& conn) = 0;
    // The outcome of the last send(). `end_of_data_sent`: the final "." had been handed to the
    // socket, so if the result carries a connection error the upstream may have accepted the
    // message all the same (its outcome is unknown). onUpstreamReady or onUpstreamClosed follows.
    virtual void onUpstreamResult(UpstreamConnection& conn,
                                  smtp::ClientSession::MessageResult result,
                                  bool end_of_data_sent) = 0;
    // The connection is over and its socket closed; called exactly once (unless the object is
    // destroyed first), after any onUpstreamResult. `error` is empty after an orderly QUIT;
    // otherwise it says why (net.*, tls.*, smtp.* codes, oauth errors from the TokenSource) with
    // its hint.
    virtual void onUpstreamClosed(UpstreamConnection& conn, std::optional<Error> error) = 0;
  };

  // Does nothing until start(). `observer` must outlive this object.
  UpstreamConnection(net::Loop& loop, UpstreamSettings settings, Observer& observer);
  // Aborts whatever is in progress (no more callbacks). A message being sent is abandoned; the
  // caller is responsible for its outcome.
  ~UpstreamConnection() override;
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  // Gets a token when needed, connects, and runs the SMTP handshake. Call once.
  void start();

  // Starts a transaction; only after onUpstreamReady and before its onUpstreamResult. The body
  // (CRLF lines, not dot-stuffed) is copied by the session; the caller may free it on return.
  // An error ("smtp.not_ready", "smtp.bad_address", "smtp.no_recipients",
  // "smtp.smtputf8_unsupported", "smtp.message_too_large") leaves the connection ready and
  // produces no callback.
  Result<void> send(const smtp::Envelope& envelope, std::string_view body);

  // Ends the connection politely: QUIT when the session is idle, otherwise an abort (a message
  // in flight is reported as temp-failed first). onUpstreamClosed follows in a later turn.
  void quit();

  [[nodiscard]] uint64_t id() const { return settings_.id; }
  // True once the session has been Ready at least once (greeting, TLS and AUTH succeeded).
  [[nodiscard]] bool established() const { return established_; }
  // True while send() may be called.
  [[nodiscard]] bool ready() const { return session_ && session_->ready() && !closed_reported_; }
  [[nodiscard]] const UpstreamSettings& settings() const { return settings_; }
  // The server reply that ended the session (a refused greeting, EHLO or AUTH, a 421), if one
  // did; readable from onUpstreamClosed, so a caller can classify it.
  [[nodiscard]] const std::optional<smtp::Reply>& closingReply() const { return closing_reply_; }

private:
  // net::Connection::Handler
  void onRead(std::span<const char> data) override;
  void onClose(const Error* reason) override;
  void onWriteDrained() override;

  void connect();
  void onConnected(Result<net::ConnectionPtr> result);
  // Writes session output while the socket's buffer is below the high-water mark.
  void pumpOutput();
  // Writes output, then hands every session event to the observer. Returns false when this
  // object was destroyed meanwhile (the caller must return at once).
  bool drive();
  void scheduleDrive();
  void armStallTimer();
  void onStall();
  // Reports the end once; the observer may destroy this object inside.
  void reportClosed(std::optional<Error> error);

  net::Loop& loop_;
  UpstreamSettings settings_;
  Observer& observer_;
  std::shared_ptr<spdlog::logger> log_;
  std::optional<smtp::ClientSession> session_;
  std::optional<smtp::Reply> closing_reply_;
  net::PendingConnectPtr pending_;
  net::ConnectionPtr conn_;
  net::TimerPtr stall_timer_;
  // Callbacks that outlive a call stack (token, TLS, deferred drives) hold this weakly.
  std::shared_ptr<char> alive_ = std::make_shared<char>(0);
  bool started_ = false;
  bool drive_scheduled_ = false;
  bool established_ = false;
  bool quitting_ = false;
  bool closed_reported_ = false;
  // The session ended and the socket is closing; onClose then reports close_error_.
  bool socket_closing_ = false;
  std::optional<Error> close_error_;
  // What the transport reported (TLS failure, read error, timeout), preferred over the
  // session's generic "smtp.connection_lost".
  std::optional<Error> transport_error_;
  // End-of-data tracking for the transaction in progress (see pumpOutput()).
  bool in_transaction_ = false;
  size_t body_size_ = 0;
  size_t pulled_ = 0;
  std::string tail_;
  bool end_of_data_sent_ = false;
};

} // namespace mailgate::relay
