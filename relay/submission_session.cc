#include "relay/submission_session.h"

#include "base/secret.h"
#include "net/loop.h"
#include "relay/policy/message_headers.h"
#include "relay/route/ledger.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <utility>

namespace mailgate::relay {

namespace {

// Above this many reply bytes the client has not read, stop reading its commands: a client that
// pipelines without ever reading cannot make us buffer without bound.
constexpr size_t kMaxUnreadReplyBytes = 256 * 1024;

int64_t wallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') {
      x = static_cast<char>(x - 'A' + 'a');
    }
    if (y >= 'A' && y <= 'Z') {
      y = static_cast<char>(y - 'A' + 'a');
    }
    if (x != y) {
      return false;
    }
  }
  return true;
}

smtp::ServerOptions serverOptions(const SubmissionContext& ctx, const std::string& peer_ip) {
  const auto& l = ctx.config->listeners.smtp;
  smtp::ServerOptions o;
  // Limits, TLS and trust are the configuration's when the connection was accepted; the sender
  // check reads the directory in force at MAIL FROM (session() sets it: it needs the session).
  o.hostname = ctx.hostname;
  // The configuration counts the CRLF; the session does not.
  o.max_line_length = l.max_line_length > 2 ? l.max_line_length - 2 : 1;
  o.max_message_bytes = l.max_message_bytes;
  o.max_recipients = l.max_recipients;
  o.tls_available = ctx.tls != nullptr;
  o.require_tls = l.require_tls;
  o.max_auth_failures = static_cast<int>(l.max_auth_failures);
  if (!l.trusted_as.empty()) {
    for (const auto& net : l.trusted_networks) {
      if (net.contains(peer_ip)) {
        o.trusted_identity = l.trusted_as;
        break;
      }
    }
  }
  return o;
}

bool trustedPeer(const config::SmtpListener& l, std::string_view peer_ip) {
  return std::any_of(l.trusted_networks.begin(), l.trusted_networks.end(),
                     [&](const config::Cidr& net) { return net.contains(std::string(peer_ip)); });
}

} // namespace

std::vector<std::string> submitterTenants(const config::Config& config, std::string_view identity) {
  const config::ApiToken* token = config.findToken(identity);
  return token != nullptr ? token->tenants : std::vector<std::string>{};
}

std::string hostOfAddress(std::string_view address) {
  if (!address.empty() && address.front() == '[') {
    const auto end = address.find(']');
    return std::string(address.substr(1, end == std::string_view::npos ? 0 : end - 1));
  }
  const auto colon = address.rfind(':');
  return std::string(colon == std::string_view::npos ? address : address.substr(0, colon));
}

std::string receivedHeader(std::string_view helo, std::string_view peer_ip,
                           std::string_view hostname, bool tls, bool authenticated,
                           int64_t now_ms) {
  const std::time_t secs = static_cast<std::time_t>(now_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char date[64];
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  // RFC 3848 protocol names: ESMTP, plus S for TLS and A for authenticated.
  std::string proto = "ESMTP";
  if (tls) {
    proto += 'S';
  }
  if (authenticated) {
    proto += 'A';
  }
  std::string h = "Received: from ";
  h += helo.empty() ? std::string_view("unknown") : helo;
  h += " ([";
  h += peer_ip;
  h += "])\r\n\tby ";
  h += hostname;
  h += " (mailgate) with ";
  h += proto;
  h += ";\r\n\t";
  h += date;
  h += "\r\n";
  return h;
}

std::string findMessageId(std::string_view message) {
  size_t pos = 0;
  while (pos < message.size()) {
    size_t eol = message.find("\r\n", pos);
    if (eol == std::string_view::npos) {
      eol = message.size();
    }
    const std::string_view line = message.substr(pos, eol - pos);
    if (line.empty()) {
      break; // end of the header block
    }
    constexpr std::string_view kName = "message-id:";
    if (line.size() > kName.size() && equalsIgnoreCase(line.substr(0, kName.size()), kName)) {
      std::string_view value = line.substr(kName.size());
      const auto open = value.find('<');
      const auto close = value.find('>', open == std::string_view::npos ? 0 : open);
      if (open != std::string_view::npos && close != std::string_view::npos) {
        return std::string(value.substr(open, close - open + 1));
      }
      return {};
    }
    pos = eol + 2;
  }
  return {};
}

SubmissionSession::SubmissionSession(std::shared_ptr<SubmissionContext> context,
                                     net::ConnectionPtr connection,
                                     std::function<void(uint64_t)> finished)
    : ctx_(std::move(context)), conn_(std::move(connection)), finished_(std::move(finished)),
      id_(conn_->id()), peer_ip_(hostOfAddress(conn_->peerAddress())),
      session_(withSenderCheck(serverOptions(*ctx_, peer_ip_))),
      timer_(net::Timer::create(*ctx_->loop)) {}

smtp::ServerOptions SubmissionSession::withSenderCheck(smtp::ServerOptions o) {
  // The session owns the ServerSession that owns this function, so `this` outlives it.
  o.check_sender = [this](std::string_view identity,
                          std::string_view mail_from) -> std::optional<smtp::PolicyRefusal> {
    if (!identityValid(identity)) {
      return smtp::PolicyRefusal{530, "5.7.0",
                                 "Authentication required: the credentials of this session are "
                                 "no longer accepted"};
    }
    const auto& dir = ctx_->directory;
    if (!dir || dir->empty()) {
      return std::nullopt; // relay-only mode
    }
    auto r = dir->resolve(mail_from, submitterTenants(*ctx_->config, identity));
    if (r) {
      return std::nullopt;
    }
    return smtp::PolicyRefusal{r.error().code, r.error().enhanced, r.error().text};
  };
  return o;
}

bool SubmissionSession::identityValid(std::string_view identity) const {
  const config::Config& c = *ctx_->config;
  if (!authenticated_) {
    // Trusted by its network: the listener must still trust it, as this identity.
    const auto& l = c.listeners.smtp;
    return !l.trusted_as.empty() && l.trusted_as == identity && trustedPeer(l, peer_ip_);
  }
  const config::ApiToken* token = c.findToken(identity);
  return token != nullptr && token->hasRole(config::Role::kSubmitter);
}

bool SubmissionSession::revalidate() {
  const auto& identity = session_.identity();
  if (done_ || revoked_ || !identity || identityValid(*identity)) {
    return !revoked_;
  }
  revoked_ = true;
  ctx_->log->warn("[c{}] the credentials of '{}' are no longer accepted after the reload; the "
                  "session closes once idle",
                  id_, *identity);
  pump();
  return false;
}

SubmissionSession::~SubmissionSession() = default;

void SubmissionSession::start() {
  ctx_->log->debug("[c{}] connection from {}{}", id_, conn_->peerAddress(),
                   session_.identity() ? " (trusted network)" : "");
  conn_->setHandler(this);
  session_.greet();
  pump();
}

void SubmissionSession::shutdown() {
  shutting_down_ = true;
  pump();
}

bool SubmissionSession::idle() const {
  return !session_.waitingForDriver() && !session_.inData() && !session_.closed();
}

void SubmissionSession::onRead(std::span<const char> data) {
  session_.receive(data);
  pump();
}

void SubmissionSession::onClose(const Error* reason) {
  if (reason != nullptr) {
    ctx_->log->debug("[c{}] connection ended: {}", id_, reason->describe());
  } else {
    ctx_->log->debug("[c{}] connection closed", id_);
  }
  finish();
}

void SubmissionSession::pump() {
  if (done_) {
    return;
  }
  for (;;) {
    if (session_.hasOutput()) {
      conn_->write(session_.takeOutput());
    }
    auto request = session_.nextRequest();
    if (!request) {
      if (revoked_ && idle()) {
        session_.shutdown("4.7.0", "credentials no longer accepted, authenticate again");
        continue;
      }
      if (shutting_down_ && idle()) {
        session_.shutdown(); // 421 4.3.2 and a Close request
        continue;
      }
      break;
    }
    std::visit([this](auto& r) { handle(r); }, *request);
    if (done_) {
      return;
    }
  }
  if (session_.closed()) {
    timer_->stop();
    return;
  }
  if (session_.waitingForDriver() || conn_->pendingWriteBytes() > kMaxUnreadReplyBytes) {
    conn_->pauseRead();
  } else {
    conn_->resumeRead();
  }
  armTimer();
}

void SubmissionSession::armTimer() {
  const auto& l = ctx_->config->listeners.smtp;
  auto fire = [this] {
    ctx_->log->info("[c{}] {} timeout, closing", id_,
                    deadline_ == Deadline::kData      ? "data"
                    : deadline_ == Deadline::kCommand ? "command"
                                                      : "idle");
    deadline_ = Deadline::kNone;
    session_.timeout();
    pump();
  };
  if (session_.waitingForDriver()) {
    // Our own work (TLS handshake, commit) is in progress; the client is not to blame.
    timer_->stop();
    deadline_ = Deadline::kNone;
  } else if (session_.inData()) {
    // One deadline for the whole message, not reset by each chunk: a client that drips bytes
    // cannot hold the session forever.
    if (deadline_ != Deadline::kData) {
      deadline_ = Deadline::kData;
      timer_->start(l.data_timeout, fire);
    }
  } else if (session_.bufferedBytes() > 0) {
    // A command line has started; it must end within command_timeout from its first byte.
    if (deadline_ != Deadline::kCommand) {
      deadline_ = Deadline::kCommand;
      timer_->start(l.command_timeout, fire);
    }
  } else {
    deadline_ = Deadline::kIdle;
    timer_->start(l.idle_timeout, fire);
  }
}

void SubmissionSession::handle(smtp::ServerSession::StartTls&) {
  std::weak_ptr<SubmissionSession> weak = weak_from_this();
  conn_->startTls(ctx_->tls, {}, [weak](Result<void> r) {
    auto self = weak.lock();
    if (!self || self->done_) {
      return;
    }
    if (!r) {
      // The connection closes by itself; onClose follows.
      self->ctx_->log->info("[c{}] STARTTLS handshake failed: {}", self->id_, r.error().describe());
      return;
    }
    self->ctx_->log->debug("[c{}] TLS {} established", self->id_, self->conn_->tlsVersion());
    self->session_.tlsStarted();
    self->authenticated_ = false; // the session starts over (RFC 3207): AUTH again
    self->pump();
  });
}

void SubmissionSession::handle(smtp::ServerSession::Authenticate& request) {
  const config::ApiToken* token = ctx_->config->findToken(request.username);
  // Compare even when the name is unknown, so the reply time does not tell names apart.
  static const Secret kNoSecret("\x01no-token\x01");
  const Secret& expected = token != nullptr ? token->secret : kNoSecret;
  const bool secret_ok = constantTimeEquals(request.password, expected.reveal());
  const bool ok = token != nullptr && secret_ok && token->hasRole(config::Role::kSubmitter);
  if (ok) {
    authenticated_ = true;
    ctx_->log->info("[c{}] authenticated as {} ({})", id_, request.username, request.mechanism);
  } else {
    ctx_->log->warn("[c{}] authentication failed for user '{}' from {}{}", id_, request.username,
                    peer_ip_,
                    token != nullptr && secret_ok ? ": token lacks the submitter role" : "");
  }
  session_.authResult(ok, request.username);
}

bool SubmissionSession::applyPolicy(smtp::ServerSession::Message& request, NewMessage& msg) {
  // Answered at once; pump(), which called handle(), writes the reply and goes on with the
  // session's next request.
  auto refuse = [this](int code, std::string_view enhanced, const std::string& text) {
    ctx_->log->warn("[c{}] message refused: {} {} {}", id_, code, enhanced, text);
    session_.messageResult(code, enhanced, text);
    return false;
  };
  // Resolved again: the configuration may have changed since MAIL FROM, and the result is
  // needed here anyway.
  auto mailbox = ctx_->directory->resolve(request.mail_from,
                                          submitterTenants(*ctx_->config, request.identity));
  if (!mailbox) {
    return refuse(mailbox.error().code, mailbox.error().enhanced, mailbox.error().text);
  }
  // 8-bit header bytes only when the client said the message has them (RFC 6152, RFC 6531).
  const bool eight_bit =
      request.params.smtputf8 || request.params.body == smtp::BodyType::k8BitMime;
  auto facts = policy::scanHeaders(request.data, eight_bit ? policy::HeaderBytes::kUtf8
                                                           : policy::HeaderBytes::kAscii);
  if (!facts) {
    return refuse(554, "5.6.0", facts.error().message);
  }
  if (facts->from_repeated) {
    // RFC 5322 section 3.6 allows exactly one From field; readers differ in which they show.
    return refuse(554, "5.6.0", "the message has more than one From field; send exactly one");
  }
  if (auto from = ctx_->directory->checkFrom(*mailbox, facts->from); !from) {
    return refuse(from.error().code, from.error().enhanced, from.error().text);
  }
  if (facts->priority) {
    auto priority = route::parsePriority(*facts->priority);
    if (!priority) {
      return refuse(554, "5.6.0",
                    "X-Mailgate-Priority must be 'personal' or 'bulk' (default bulk)");
    }
    msg.priority = std::string(route::toString(*priority));
    // The header is ours; it never leaves the gateway.
    request.data = policy::removeHeaderField(request.data, "X-Mailgate-Priority");
  }
  msg.tenant = mailbox->tenant->id;
  msg.mailbox = mailbox->mailbox->address;
  msg.route.clear(); // the router decides per attempt
  return true;
}

void SubmissionSession::handle(smtp::ServerSession::Message& request) {
  const int64_t now = wallClockMs();
  NewMessage msg;
  if (revoked_ || !identityValid(request.identity)) {
    // A reload removed what the session authenticated with, during this transaction.
    ctx_->log->warn("[c{}] message refused: the credentials of '{}' are no longer accepted", id_,
                    request.identity);
    session_.messageResult(451, "4.7.0",
                           "the credentials of this session are no longer accepted; reconnect "
                           "and authenticate again");
    return;
  }
  if (ctx_->directory && !ctx_->directory->empty() && !applyPolicy(request, msg)) {
    return;
  }
  msg.mail_from = std::move(request.mail_from);
  msg.recipients = std::move(request.recipients);
  msg.message_id = findMessageId(request.data);
  std::string trace = receivedHeader(request.helo, peer_ip_, ctx_->hostname, request.tls,
                                     !request.identity.empty(), now);
  msg.body.reserve(trace.size() + request.data.size());
  msg.body = std::move(trace);
  msg.body += request.data;
  request.data.clear();
  request.data.shrink_to_fit();
  msg.submitter = request.identity;
  msg.smtputf8 = request.params.smtputf8;
  msg.body_8bit = request.params.body == smtp::BodyType::k8BitMime;
  msg.now_ms = now;
  msg.expires_at_ms = now + ctx_->config->queue.lifetime.count();

  if (ctx_->directory) {
    // In tenant mode the envelope sender and From are the same mailbox (applyPolicy checked).
    auto plan = policy::planBcc(*ctx_->config, *ctx_->directory, msg.recipients, msg.mail_from);
    if (plan.any()) {
      if (plan.refused()) {
        const std::string text = policy::bccRefusalText(msg.mail_from, plan.skipped.front().tenant);
        ctx_->log->warn("[c{}] message refused: 550 5.7.1 {}", id_, text);
        session_.messageResult(550, "5.7.1", text);
        return;
      }
      if (ctx_->bcc == nullptr) {
        ctx_->log->error("[c{}] message refused: no BCC ingestion in this server", id_);
        session_.messageResult(451, "4.3.0", "BCC ingestion is not available, try again later");
        return;
      }
      msg.recipients = std::move(plan.relay);
      submitBcc(BccSubmission{std::move(msg), std::move(plan.copies), std::move(plan.skipped)});
      return;
    }
  }

  // What the delivery side needs to schedule it; the id is filled in once the store gave one.
  QueuedMessage queued = queuedFrom(msg, {});

  const size_t recipients = msg.recipients.size();
  std::weak_ptr<SubmissionSession> weak = weak_from_this();
  std::weak_ptr<SubmissionContext> weak_ctx = ctx_;
  const uint64_t conn_id = id_;
  ctx_->store->enqueue(std::move(msg), [weak, weak_ctx, conn_id, queued = std::move(queued),
                                        recipients](Result<std::string> id) mutable {
    auto ctx = weak_ctx.lock();
    if (!ctx) {
      return; // the server is gone; a committed message goes out after the next start
    }
    if (!id) {
      ctx->log->error("[c{}] message not accepted: {}", conn_id, id.error().describe());
      if (auto self = weak.lock(); self && !self->done_) {
        if (id.error().code == "store.full") {
          self->session_.messageResult(452, "4.3.1",
                                       "Insufficient system storage, try again later");
        } else {
          self->session_.messageResult(
              451, "4.3.0", "Temporary local problem storing the message, try again later");
        }
        self->pump();
      }
      return;
    }
    ctx->log->info("[c{}] queued {} from=<{}> rcpts={} size={}", conn_id, *id, queued.mail_from,
                   recipients, queued.size);
    queued.id = *id;
    if (auto self = weak.lock(); self && !self->done_) {
      self->session_.messageResult(250, "2.0.0", "Ok: queued as " + *id);
      self->pump();
    }
    // Delivery learns of the message even when its client has gone meanwhile: it is committed.
    if (ctx->accepted) {
      ctx->accepted(std::move(queued));
    }
  });
}

void SubmissionSession::submitBcc(BccSubmission submission) {
  QueuedMessage queued = queuedFrom(submission.message, {});
  std::string note;
  if (!submission.skipped.empty()) {
    // Accepted for the rest; the reply still says which copy was not made.
    note = " (" +
           policy::bccRefusalText(submission.message.mail_from, submission.skipped.front().tenant) +
           "; that copy was skipped)";
  }
  const size_t copies = submission.copies.size();
  std::weak_ptr<SubmissionSession> weak = weak_from_this();
  std::weak_ptr<SubmissionContext> weak_ctx = ctx_;
  const uint64_t conn_id = id_;
  ctx_->bcc->submit(std::move(submission), [weak, weak_ctx, conn_id, copies,
                                            queued = std::move(queued),
                                            note = std::move(note)](Result<BccReceipt> r) mutable {
    auto ctx = weak_ctx.lock();
    if (!ctx) {
      return; // the server is gone; what was committed stays committed
    }
    auto self = weak.lock();
    const bool answer = self && !self->done_;
    if (!r) {
      ctx->log->error("[c{}] message not accepted (BCC ingestion): {}", conn_id,
                      r.error().describe());
      if (answer) {
        if (r.error().code == "store.full") {
          self->session_.messageResult(452, "4.3.1",
                                       "Insufficient system storage, try again later");
        } else {
          self->session_.messageResult(
              451, "4.3.0", "Temporary local problem storing the message, try again later");
        }
        self->pump();
      }
      return;
    }
    std::string text;
    if (!r->queue_id.empty()) {
      text = "Ok: queued as " + r->queue_id;
      if (copies > 0) {
        text += ", BCC copy ingested";
      }
    } else {
      text = "Ok: BCC copy ingested";
      if (!r->uids.empty()) {
        text += " as uid " + std::to_string(r->uids.front());
      }
    }
    text += note;
    ctx->log->info("[c{}] {} from=<{}> rcpts={} bcc_copies={} size={}", conn_id, text,
                   queued.mail_from, queued.recipients.size(), copies, queued.size);
    if (answer) {
      self->session_.messageResult(250, "2.0.0", text);
      self->pump();
    }
    if (!r->queue_id.empty() && ctx->accepted) {
      queued.id = r->queue_id;
      ctx->accepted(std::move(queued));
    }
  });
}

void SubmissionSession::handle(smtp::ServerSession::Close& request) {
  ctx_->log->debug("[c{}] closing: {}", id_, request.reason);
  timer_->stop();
  conn_->close(); // flushes the last reply first; onClose follows
}

void SubmissionSession::finish() {
  if (done_) {
    return;
  }
  done_ = true;
  timer_->stop();
  ctx_->loop->defer([finished = finished_, id = id_] { finished(id); });
}

} // namespace mailgate::relay
