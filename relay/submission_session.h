// One SMTP submission connection: binds a sans-IO smtp::ServerSession to a net::Connection, owns
// its timers, checks credentials against the configured tokens, and commits each message to the
// durable queue before the client hears 250.
#pragma once

#include "config/config.h"
#include "net/connection.h"
#include "net/timer.h"
#include "relay/bcc_ingest.h"
#include "relay/policy/sender_directory.h"
#include "relay/queue_store.h"
#include "relay/smtp/protocol/server_session.h"

#include <functional>
#include <memory>
#include <spdlog/logger.h>
#include <string>

namespace mailgate::relay {

// What every session of one listener shares. Owned by the SubmissionServer and its sessions;
// commit completions hold it weakly, so they do nothing once the server is gone.
//
// A reload (SubmissionServer::reconfigure) replaces `config`, `directory` and `hostname` in
// place, on the loop thread. Sessions therefore read them afresh at each use and never keep a
// pointer into either across a loop turn (a MailboxRef or an ApiToken* is used within the call
// that looked it up).
struct SubmissionContext {
  net::Loop* loop = nullptr;
  QueueStore* store = nullptr;
  BccIngest* bcc = nullptr; // null: a message to a bcc_address is refused (451 4.3.0)
  const config::Config* config = nullptr;
  // Keeps `config` alive once a reload supplied it (null while it is create()'s).
  std::shared_ptr<const config::Config> config_owner;
  net::TlsContextPtr tls; // null: no STARTTLS
  // Who may send as whom, built from `config` (its MailboxRefs point into it). Empty (no tenant
  // has mailboxes): relay-only mode, every sender is accepted and every message goes to relay
  // "default".
  std::shared_ptr<const policy::SenderDirectory> directory;
  std::string hostname;
  std::function<void(QueuedMessage)> accepted;
  std::shared_ptr<spdlog::logger> log;
};

class SubmissionSession : public net::Connection::Handler,
                          public std::enable_shared_from_this<SubmissionSession> {
public:
  // `finished` runs (deferred, never re-entrantly) once the connection is over; the owner then
  // drops its reference. The session must be held by a shared_ptr before start() is called.
  SubmissionSession(std::shared_ptr<SubmissionContext> context, net::ConnectionPtr connection,
                    std::function<void(uint64_t id)> finished);
  ~SubmissionSession() override;
  SubmissionSession(const SubmissionSession&) = delete;
  SubmissionSession& operator=(const SubmissionSession&) = delete;

  void start();
  // Drain: say 421 and close as soon as no transaction is in progress.
  void shutdown();
  // After a reload: false when the identity the session acts for is no longer accepted (its
  // token was removed or lost the submitter role; a trusted network or trusted_as changed).
  // Such a session refuses its current message with 451 4.7.0 at the end of DATA and is closed
  // with 421 4.7.0 as soon as it is idle.
  bool revalidate();
  [[nodiscard]] uint64_t id() const { return id_; }

  void onRead(std::span<const char> data) override;
  void onClose(const Error* reason) override;

private:
  smtp::ServerOptions withSenderCheck(smtp::ServerOptions o);
  // Writes pending replies, serves the session's requests, and re-arms the timer.
  void pump();
  void handle(smtp::ServerSession::StartTls&);
  void handle(smtp::ServerSession::Authenticate& request);
  void handle(smtp::ServerSession::Message& request);
  // Sender policy for a message with tenants configured: resolves the mailbox, checks the From
  // header, reads and removes X-Mailgate-Priority. Returns false after answering the client.
  bool applyPolicy(smtp::ServerSession::Message& request, NewMessage& msg);
  // Whether `identity` (the session's) is still accepted under the current configuration.
  [[nodiscard]] bool identityValid(std::string_view identity) const;
  // The BCC path (docs/bcc.md): `msg` is complete, its recipients still every RCPT.
  void submitBcc(BccSubmission submission);
  void handle(smtp::ServerSession::Close& request);
  void armTimer();
  void finish();
  [[nodiscard]] bool idle() const;

  std::shared_ptr<SubmissionContext> ctx_;
  net::ConnectionPtr conn_;
  std::function<void(uint64_t)> finished_;
  const uint64_t id_;
  const std::string peer_ip_;
  smtp::ServerSession session_;
  net::TimerPtr timer_;
  enum class Deadline { kNone, kIdle, kCommand, kData } deadline_ = Deadline::kNone;
  bool shutting_down_ = false;
  bool revoked_ = false;
  bool authenticated_ = false; // by AUTH (not by a trusted network)
  bool done_ = false;
};

using SubmissionSessionPtr = std::shared_ptr<SubmissionSession>;

// The IP part of "ip:port" / "[v6]:port".
[[nodiscard]] std::string hostOfAddress(std::string_view address);

// The Received: trace header (RFC 5321 section 4.4) mailgate prepends to every accepted message.
[[nodiscard]] std::string receivedHeader(std::string_view helo, std::string_view peer_ip,
                                         std::string_view hostname, bool tls, bool authenticated,
                                         int64_t now_ms);

// The tenants a submitter (token name, or the trusted_as name) may send for; {"*"} for all, empty
// for an unknown name.
[[nodiscard]] std::vector<std::string> submitterTenants(const config::Config& config,
                                                        std::string_view identity);

// The value of the first Message-ID header in the header block, or empty.
[[nodiscard]] std::string findMessageId(std::string_view message);

} // namespace mailgate::relay
