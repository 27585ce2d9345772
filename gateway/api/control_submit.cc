// POST /v1/messages: a message from the API takes the path of one submitted over SMTP: the
// sender is resolved to a mailbox within the token's tenants, the message is committed durably
// (with its Idempotency-Key in the same transaction), answered 202, and handed to delivery.
#include "config/values.h"
#include "gateway/api/bcc_ingest.h"
#include "gateway/api/control_state.h"
#include "gateway/message/submission.h"
#include "gateway/store/message_queries.h"
#include "net/digest.h"
#include "net/loop.h"
#include "relay/policy/bcc_plan.h"
#include "relay/policy/sender_directory.h"

#include <fmt/format.h>

namespace mailgate::api {

namespace {

// Bodies up to this size are composed on the loop (GMime takes well under a millisecond for
// them); larger ones on the background worker, so the loop never waits for a big message.
constexpr std::size_t kInlineComposeBytes = 64 * 1024;
// Large submissions waiting for the worker at most; past it the API answers 503 api.busy.
constexpr std::size_t kMaxQueuedCompositions = 8;

std::string mediaType(const std::string* content_type) {
  if (content_type == nullptr) {
    return {};
  }
  std::string_view v = *content_type;
  v = v.substr(0, v.find(';'));
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) {
    v.remove_suffix(1);
  }
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) {
    v.remove_prefix(1);
  }
  return config::lowerAscii(v);
}

bool validKey(std::string_view key) {
  if (key.empty() || key.size() > store::kMaxIdempotencyKeyBytes) {
    return false;
  }
  for (const char c : key) {
    if (c < 0x20 || c > 0x7e) {
      return false;
    }
  }
  return true;
}

nlohmann::json acceptedJson(const std::string& id, const std::string& message_id,
                            const std::string& tenant, const std::string& mailbox,
                            std::size_t recipients) {
  return {{"id", id},
          {"message_id", message_id},
          {"state", "queued"},
          {"tenant", tenant.empty() ? nlohmann::json(nullptr) : nlohmann::json(tenant)},
          {"mailbox", mailbox.empty() ? nlohmann::json(nullptr) : nlohmann::json(mailbox)},
          {"recipients", recipients}};
}

} // namespace

void ControlApi::State::rebuildDirectory() {
  auto d = std::make_shared<Directory>();
  d->config = config;
  d->senders = std::make_unique<relay::policy::SenderDirectory>(*d->config);
  directory = std::move(d);
}

void ControlApi::State::postMessage(const CallPtr& call) {
  if (draining) {
    replyFailure(call, Error("api.draining", "mailgated is stopping and takes no new mail",
                             "submit again to another node, or after the restart"));
    return;
  }
  const HttpRequest& req = call->req();
  const std::string type = mediaType(req.header("content-type"));
  const bool json = type == "application/json";
  if (!json && type != "message/rfc822") {
    replyError(call, 415, "api.unsupported_media_type",
               type.empty() ? std::string("the request has no Content-Type")
                            : fmt::format("Content-Type {} is not accepted here", type),
               "send application/json (composed by the gateway) or message/rfc822 (a whole "
               "RFC 5322 message)");
    return;
  }
  std::optional<store::IdempotencyKey> key;
  if (const std::string* k = req.header("idempotency-key"); k != nullptr) {
    if (!validKey(*k)) {
      replyError(call, 400, "idempotency.bad_key",
                 "the Idempotency-Key must be 1 to 255 printable ASCII characters",
                 "send a unique key per message, such as a UUID");
      return;
    }
    // What makes two requests "the same": everything the message is made from.
    const std::string* priority = call->q("priority");
    key = store::IdempotencyKey{
        call->token->name, *k,
        net::sha256Hex(fmt::format("{}\n{}\n{}\n{}\n", req.method, req.path, type,
                                   priority != nullptr ? *priority : std::string()) +
                       req.body)};
  }
  message::ComposeContext ctx;
  ctx.message_id_domain = call->config->node.id;
  ctx.now_ms = call->now_ms;
  ctx.limits.max_recipients = call->config->listeners.smtp.max_recipients;
  ctx.limits.max_message_bytes = call->config->listeners.smtp.max_message_bytes;
  const std::string priority = call->q("priority") != nullptr ? *call->q("priority") : "";
  if (req.body.size() <= kInlineComposeBytes) {
    auto composed = json ? message::composeFromJson(req.body, ctx)
                         : message::prepareRaw(req.body, ctx, priority);
    submitComposed(call, std::move(key), std::move(composed));
    return;
  }
  // Large: composed on the worker from its own copy of the body. The call itself stays on the
  // loop thread (parked under an id), so nothing of the HTTP session is touched elsewhere.
  const uint64_t job_id = ++next_composition;
  composing.emplace(job_id, Composition{call, std::move(key)});
  std::weak_ptr<State> weak = weak_from_this();
  net::Loop* loop = deps.loop;
  auto job = [weak, loop, job_id, json, ctx, priority,
              body = std::make_shared<const std::string>(req.body)] {
    auto composed =
        json ? message::composeFromJson(*body, ctx) : message::prepareRaw(*body, ctx, priority);
    loop->post([weak, job_id, composed = std::move(composed)]() mutable {
      auto self = weak.lock();
      if (!self) {
        return;
      }
      auto it = self->composing.find(job_id);
      if (it == self->composing.end()) {
        return;
      }
      Composition c = std::move(it->second);
      self->composing.erase(it);
      self->submitComposed(c.call, std::move(c.key), std::move(composed));
    });
  };
  if (!worker.run(std::move(job), kMaxQueuedCompositions)) {
    composing.erase(job_id);
    HttpResponse r = jsonError(503, "api.busy", "too many large messages are being composed",
                               "try again in a few seconds");
    r.headers.emplace_back("retry-after", "5");
    reply(call, std::move(r));
  }
}

void ControlApi::State::submitComposed(const CallPtr& call,
                                       std::optional<store::IdempotencyKey> key,
                                       Result<message::SubmittedMessage> composed) {
  if (!composed) {
    replyError(call, message::httpStatus(composed.error().code), composed.error().code,
               composed.error().message, composed.error().hint);
    return;
  }
  message::SubmittedMessage& m = *composed;
  relay::NewMessage msg;
  const auto& dir = call->directory;
  if (!dir->senders->empty()) {
    auto mailbox = dir->senders->resolve(m.from, call->token->tenants);
    if (!mailbox) {
      replyError(call, 422, "message.unknown_sender", mailbox.error().text,
                 "send from a configured mailbox or alias of a tenant this token may use "
                 "(GET /v1/mailboxes lists them)");
      return;
    }
    msg.tenant = mailbox->tenant->id;
    msg.mailbox = mailbox->mailbox->address;
    msg.route.clear(); // the router decides per attempt
  } else if (!call->token->allTenants()) {
    replyError(call, 422, "message.unknown_sender",
               "this gateway has no tenants, so only a token of every tenant may submit",
               "configure tenants and mailboxes, or use a token with tenants: [\"*\"]");
    return;
  }
  msg.mail_from = m.from;
  msg.recipients = m.recipients;
  msg.body = std::move(m.data);
  msg.submitter = call->token->name;
  msg.message_id = m.message_id;
  msg.smtputf8 = m.smtputf8;
  msg.body_8bit = m.body_8bit;
  msg.priority = m.priority;
  msg.now_ms = call->now_ms;
  msg.expires_at_ms = call->now_ms + call->config->queue.lifetime.count();

  auto plan = relay::policy::planBcc(*dir->config, *dir->senders, msg.recipients, m.from);
  if (plan.any()) {
    if (plan.refused()) {
      replyError(call, 422, "message.bcc_unknown_sender",
                 relay::policy::bccRefusalText(m.from, plan.skipped.front().tenant),
                 "send from a mailbox or alias of the tenant whose bcc_address you use, or leave "
                 "that address out");
      return;
    }
    msg.recipients = std::move(plan.relay);
    submitBcc(
        call, std::move(key),
        relay::BccSubmission{std::move(msg), std::move(plan.copies), std::move(plan.skipped)});
    return;
  }

  // What delivery needs; the id is filled in once the store gave one (as the SMTP path does).
  relay::QueuedMessage queued = relay::queuedFrom(msg, {});

  std::weak_ptr<State> weak = weak_from_this();
  auto finish = [weak, call](Result<store::EnqueueOutcome> r, relay::QueuedMessage queued) mutable {
    auto self = weak.lock();
    if (!self) {
      return; // committed or not, the client never hears; it retries with its key
    }
    if (!r) {
      if (r.error().code == "store.idempotency_mismatch") {
        self->replyError(call, 422, "idempotency.mismatch", r.error().message, r.error().hint);
      } else {
        self->replyFailure(call, r.error());
      }
      return;
    }
    if (r->replayed) {
      const auto& first = r->message;
      self->log->info("{} replayed Idempotency-Key for {}", call->actor(), first.id);
      self->replyJson(call, 202,
                      acceptedJson(first.id, first.message_id, first.tenant, first.mailbox,
                                   first.recipients.size()),
                      {{"location", "/v1/messages/" + first.id}, {"idempotent-replayed", "true"}});
      return;
    }
    queued.id = r->id;
    self->log->info("{} queued {} from=<{}> rcpts={} size={}", call->actor(), queued.id,
                    queued.mail_from, queued.recipients.size(), queued.size);
    self->replyJson(call, 202,
                    acceptedJson(queued.id, queued.message_id, queued.tenant, queued.mailbox,
                                 queued.recipients.size()),
                    {{"location", "/v1/messages/" + queued.id}});
    if (self->deps.accepted) {
      self->deps.accepted(std::move(queued));
    }
  };
  if (key) {
    deps.store->enqueueIdempotent(
        std::move(msg), std::move(*key),
        [finish, queued = std::move(queued)](Result<store::EnqueueOutcome> r) mutable {
          finish(std::move(r), std::move(queued));
        });
    return;
  }
  deps.store->enqueue(std::move(msg),
                      [finish, queued = std::move(queued)](Result<std::string> id) mutable {
                        if (!id) {
                          finish(std::unexpected(std::move(id.error())), std::move(queued));
                          return;
                        }
                        finish(store::EnqueueOutcome{*id, false, {}}, std::move(queued));
                      });
}

void ControlApi::State::submitBcc(const CallPtr& call, std::optional<store::IdempotencyKey> key,
                                  relay::BccSubmission submission) {
  relay::QueuedMessage queued = relay::queuedFrom(submission.message, {});
  // What the answer lists, kept apart: the submission moves into the store.
  std::vector<std::string> mailboxes;
  for (const auto& c : submission.copies) {
    mailboxes.push_back(c.mailbox);
  }
  nlohmann::json skipped = nlohmann::json::array();
  for (const auto& k : submission.skipped) {
    skipped.push_back(
        {{"address", k.address},
         {"reason", relay::policy::bccRefusalText(submission.message.mail_from, k.tenant)}});
  }
  std::weak_ptr<State> weak = weak_from_this();
  ingestBcc(
      *deps.store, std::move(submission), std::move(key),
      [weak, call, queued = std::move(queued), mailboxes = std::move(mailboxes),
       skipped = std::move(skipped)](Result<store::BccOutcome> r) mutable {
        auto self = weak.lock();
        if (!self) {
          return;
        }
        if (!r) {
          if (r.error().code == "store.idempotency_mismatch") {
            self->replyError(call, 422, "idempotency.mismatch", r.error().message, r.error().hint);
          } else {
            self->replyFailure(call, r.error());
          }
          return;
        }
        if (r->replayed) {
          const auto& first = r->first;
          self->log->info("{} replayed Idempotency-Key for {}", call->actor(), first.id);
          self->replyJson(
              call, 202,
              acceptedJson(first.id, first.message_id, first.tenant, first.mailbox,
                           first.recipients.size()),
              {{"location", "/v1/messages/" + first.id}, {"idempotent-replayed", "true"}});
          return;
        }
        const std::string& id = r->receipt.queue_id;
        nlohmann::json ingested = nlohmann::json::array();
        for (size_t i = 0; i < mailboxes.size() && i < r->receipt.uids.size(); ++i) {
          ingested.push_back(
              {{"mailbox", mailboxes[i]}, {"folder", "bcc"}, {"uid", r->receipt.uids[i]}});
        }
        nlohmann::json body = acceptedJson(id, queued.message_id, queued.tenant, queued.mailbox,
                                           queued.recipients.size());
        if (id.empty()) {
          body["id"] = nullptr;
          body["state"] = "ingested";
        }
        body["bcc"] = {{"ingested", std::move(ingested)}, {"skipped", std::move(skipped)}};
        self->log->info("{} {} from=<{}> rcpts={} bcc_copies={} size={}", call->actor(),
                        id.empty() ? std::string("ingested (BCC only)") : "queued " + id,
                        queued.mail_from, queued.recipients.size(), mailboxes.size(), queued.size);
        if (id.empty()) {
          self->replyJson(call, 202, body, {});
          return;
        }
        self->replyJson(call, 202, body, {{"location", "/v1/messages/" + id}});
        queued.id = id;
        if (self->deps.accepted) {
          self->deps.accepted(std::move(queued));
        }
      });
}

} // namespace mailgate::api
