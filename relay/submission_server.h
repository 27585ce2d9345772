// The SMTP submission listener: accepts the CRM's connections, runs one SubmissionSession per
// connection, and hands every durably queued message to the delivery side.
//
// Threading: loop thread only. Lifetime: owns its listener and sessions; destroying it aborts
// every session (a message whose commit is still in flight is still committed by the store, and
// delivered after the next start, but its client never hears 250 and will resend: at-least-once).
#pragma once

#include "base/error.h"
#include "config/config.h"
#include "relay/bcc_ingest.h"
#include "relay/queue_store.h"
#include "relay/reload_report.h"

#include <cstdint>
#include <functional>
#include <memory>

namespace mailgate::net {
class Loop;
}

namespace mailgate::relay {

class SubmissionServer {
public:
  // Receives each message right after its commit became durable (and before the client reads
  // 250), in state queued with every recipient pending.
  using AcceptedFn = std::function<void(QueuedMessage)>;

  // Binds listeners.smtp.address and loads its TLS certificate. `config` must stay alive until
  // the server is destroyed or reconfigure() has replaced it. Errors: "net.listen",
  // "tls.config". `bcc` (may be null; then must outlive the server) takes the messages that
  // have a tenant's bcc_address among their recipients (docs/bcc.md); without it such a
  // message is refused with 451 4.3.0.
  static Result<std::unique_ptr<SubmissionServer>> create(net::Loop& loop,
                                                          const config::Config& config,
                                                          QueueStore& store, AcceptedFn accepted,
                                                          BccIngest* bcc = nullptr);
  ~SubmissionServer();
  SubmissionServer(const SubmissionServer&) = delete;
  SubmissionServer& operator=(const SubmissionServer&) = delete;

  [[nodiscard]] uint16_t port() const;
  [[nodiscard]] size_t sessionCount() const;

  // Live reload with a configuration that passed validation. Once it returns the server refers
  // to nothing of the previous configuration (sessions included), so the caller may drop it; it
  // keeps `next` itself. Applied at once: listeners.api.tokens (SMTP AUTH; a session whose token
  // was removed or lost the submitter role refuses its current message with 451 4.7.0 and is
  // closed with 421 4.7.0 when idle), tenants (who may send as whom: the sender directory; a
  // transaction in progress is checked again against it at the end of DATA), the timeouts,
  // listeners.smtp.max_connections, queue.lifetime and node.id (for new sessions), and
  // trusted_networks/trusted_as (new connections get the new trust; a trusted session that lost
  // it is treated as above). max_message_bytes, max_recipients, max_line_length,
  // max_auth_failures and require_tls apply to connections accepted from now on.
  // listeners.smtp.address and listeners.smtp.tls are not applied: they are listed in
  // restart_required. Never fails today; Result for errors to come (a certificate to load).
  Result<ReloadReport> reconfigure(std::shared_ptr<const config::Config> next);

  // SIGTERM: stops accepting; idle sessions get 421 4.3.2 and close; a session in the middle of a
  // transaction finishes it (its message is committed and answered) and then gets 421. `done`
  // runs on the loop, in a later turn, once no session is left.
  void drain(std::function<void()> done);

  struct State; // shared with the sessions; see submission_server.cc

  // Only create() can make the tag, so only create() can construct a server.
  class PrivateTag {
    friend class SubmissionServer;
    PrivateTag() = default;
  };
  SubmissionServer(PrivateTag, std::shared_ptr<State> state);

private:
  std::shared_ptr<State> state_;
};

} // namespace mailgate::relay
