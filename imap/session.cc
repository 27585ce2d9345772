#include "imap/session.h"

#include "base/base64.h"
#include "base/log.h"
#include "imap/protocol/ascii.h"
#include "imap/protocol/mailbox_name.h"
#include "net/loop.h"

#include <algorithm>
#include <utility>

namespace mailgate::imap {

namespace {

using protocol::CommandBuilder;
using protocol::LiteralMode;

using protocol::ascii::iequals;

// The text of a status for error messages: "[CODE raw] text", at most 300 bytes.
std::string statusText(const protocol::StatusResponse& status) {
  std::string out;
  if (status.code) {
    out += '[';
    out += status.code->name;
    if (!status.code->raw.empty()) {
      out += ' ';
      out += status.code->raw;
    }
    out += "] ";
  }
  out += status.text;
  if (out.size() > 300) {
    out.resize(300);
    out += "...";
  }
  return out;
}

// Only characters that cannot break the quoted strings of an ID command.
std::string idSafe(std::string_view text) {
  std::string out;
  for (char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
        c == '-' || c == '_') {
      out += c;
    }
  }
  return out.empty() ? std::string("unknown") : out;
}

// A NO or BAD as an error. Throttling and availability texts get their own codes, so the pool
// and operators can tell them from a refusal of the command itself; the hint says what to do.
Error refusal(const protocol::StatusResponse& status, std::string_view command) {
  auto advice = protocol::adviceFor(status);
  std::string code = status.status == protocol::Status::kNo ? "imap.no" : "imap.bad";
  switch (advice.kind) {
  case protocol::Advice::Kind::kThrottled:
    code = "imap.throttled";
    break;
  case protocol::Advice::Kind::kUnavailable:
    code = "imap.unavailable";
    break;
  case protocol::Advice::Kind::kAuthTrouble:
    code = "imap.not_connected";
    break;
  default:
    break;
  }
  return Error(code, std::string(command) + " refused: " + statusText(status), advice.hint);
}

// A refused login: the refusal's own code when the server was throttling or unavailable (not the
// credentials' fault), else "imap.auth" with `fallback_hint` unless the server's text gave one.
Error loginRefusal(const Error& refused, std::string_view fallback_hint) {
  if (refused.code == "imap.throttled" || refused.code == "imap.unavailable" ||
      refused.code == "imap.not_connected") {
    return refused;
  }
  return Error("imap.auth", refused.message,
               refused.hint.empty() ? std::string(fallback_hint) : refused.hint);
}

} // namespace

struct Session::Pending {
  Build build;
  Done<CommandReply> done;
  std::function<void(protocol::FetchData&&)> each; // FETCH data goes here, not into the reply
  // Called on each continuation when set (SASL steps, IDLE); else the next literal chunk is sent.
  std::function<void(const std::string& text)> on_continuation;
  protocol::Command command;
  std::size_t next_chunk = 0;
  CommandReply reply;
  std::chrono::milliseconds timeout{0};
  bool internal = false; // a login step: runs before the session is ready
  bool is_idle = false;
  std::string log_text; // overrides command.redacted on log lines
};

struct Session::IdleState {
  Done<void> ended;
  bool sent = false;        // the IDLE command is in flight
  bool established = false; // the server answered "+"
  bool done_sent = false;
  bool renewing = false; // DONE for a renewal: IDLE again after the OK
  bool stop = false;     // stop once the server allows (after "+")
};

bool FolderInfo::selectable() const {
  return std::ranges::none_of(attributes, [](const std::string& a) {
    return iequals(a, "\\Noselect") || iequals(a, "\\NonExistent");
  });
}

Session::Session(net::Loop& loop, SessionSettings settings, Observer& observer)
    : loop_(loop), settings_(std::move(settings)), observer_(observer), log_(logger("imap")),
      parser_(settings_.limits), deadline_(net::Timer::create(loop)),
      renew_(net::Timer::create(loop)) {}

Session::~Session() {
  *alive_ = false;
  if (conn_) {
    conn_->setHandler(nullptr);
  }
}

void Session::start() {
  if (state_ != State::kIdle) {
    return;
  }
  state_ = State::kConnecting;
  net::ConnectOptions options;
  options.bind_address = settings_.bind_address;
  options.timeout = settings_.timeouts.connect;
  options.handshake_timeout = settings_.timeouts.connect;
  if (settings_.tls == config::TlsMode::kImplicit) {
    options.tls = settings_.tls_context;
  }
  log_->debug("imap={} {}: connecting to {}", settings_.id, settings_.mailbox,
              net::formatEndpoint(settings_.endpoint));
  connecting_ = net::connect(loop_, settings_.endpoint, std::move(options),
                             [this](Result<net::ConnectionPtr> r) { connected(std::move(r)); });
}

void Session::connected(Result<net::ConnectionPtr> result) {
  connecting_.reset();
  if (!result) {
    fail(result.error());
    return;
  }
  conn_ = std::move(*result);
  state_ = State::kGreeting;
  armDeadline(settings_.timeouts.login);
  conn_->setHandler(this);
}

void Session::armDeadline(std::chrono::milliseconds timeout) {
  deadline_timeout_ = timeout;
  deadline_->start(timeout, [this] {
    std::string what = state_ == State::kGreeting ? std::string("the greeting")
                       : in_flight_               ? in_flight_->command.name
                                                  : std::string("the server");
    fail(Error("imap.timeout",
               "no answer to " + what + " in " + std::to_string(deadline_timeout_.count() / 1000) +
                   " s",
               "the IMAP server accepted the connection but stopped answering"));
  });
}

void Session::onRead(std::span<const char> data) {
  if (state_ == State::kClosing || state_ == State::kClosed) {
    return;
  }
  parser_.feed(data);
  if (deadline_->active()) {
    armDeadline(deadline_timeout_); // data flows: the wait counts from the last byte
  }
  std::weak_ptr<bool> alive = alive_;
  while (state_ != State::kClosing && state_ != State::kClosed && !tls_pending_) {
    auto next = parser_.next();
    if (!next) {
      fail(Error("imap.protocol", "unreadable server response: " + next.error().message,
                 "the server at " + net::formatEndpoint(settings_.endpoint) +
                     " does not speak IMAP as expected"));
      return;
    }
    if (!*next) {
      break;
    }
    handleResponse(**next);
    if (alive.expired()) {
      return;
    }
  }
}

void Session::handleResponse(protocol::Response& response) {
  if (state_ == State::kGreeting) {
    handleGreeting(response);
    return;
  }
  switch (response.kind) {
  case protocol::Response::Kind::kTagged:
    handleTagged(response);
    break;
  case protocol::Response::Kind::kContinuation:
    handleContinuation(response);
    break;
  case protocol::Response::Kind::kUntagged:
    handleUntagged(response);
    break;
  }
}

void Session::handleGreeting(protocol::Response& response) {
  auto* status = std::get_if<protocol::StatusResponse>(&response.data);
  if (response.kind != protocol::Response::Kind::kUntagged || !status) {
    fail(Error("imap.protocol", "the server's first line is not an IMAP greeting",
               "check that " + net::formatEndpoint(settings_.endpoint) +
                   " is an IMAP port and its TLS mode (implicit on 993, STARTTLS on 143)"));
    return;
  }
  greeting_ = statusText(*status);
  std::weak_ptr<bool> alive = alive_;
  noteStatus(*status);
  if (alive.expired()) {
    return;
  }
  if (status->status == protocol::Status::kBye) {
    fail(Error("imap.bye", "the server refused the session: " + greeting_));
    return;
  }
  if (status->code && status->code->name == "CAPABILITY") {
    capabilities_ = status->code->capabilities;
  }
  state_ = State::kLogin;
  if (status->status == protocol::Status::kPreauth) {
    loginEnable();
    return;
  }
  if (status->status != protocol::Status::kOk) {
    fail(Error("imap.protocol", "unexpected greeting: " + greeting_));
    return;
  }
  loginCapability(&Session::loginStartTls);
}

void Session::noteStatus(const protocol::StatusResponse& status) {
  if (status.code && status.code->name == "CAPABILITY") {
    capabilities_ = status.code->capabilities;
  }
  auto advice = protocol::adviceFor(status);
  if (advice.kind == protocol::Advice::Kind::kNone) {
    return;
  }
  advice_ = advice;
  observer_.onSessionAdvice(*this, advice);
}

void Session::handleTagged(protocol::Response& response) {
  if (!in_flight_ || response.tag != in_flight_->command.tag) {
    log_->warn("imap={} {}: ignoring an answer for unknown tag {}", settings_.id, settings_.mailbox,
               response.tag.substr(0, 32));
    return;
  }
  std::weak_ptr<bool> alive = alive_;
  noteStatus(response.status);
  if (alive.expired()) {
    return;
  }
  deadline_->stop();
  if (in_flight_->is_idle) {
    auto idle_pending = std::move(in_flight_);
    renew_->stop();
    if (response.status.status != protocol::Status::kOk) {
      auto ended = std::move(idle_->ended);
      idle_.reset();
      if (ended) {
        ended(std::unexpected(refusal(response.status, "IDLE")));
      }
    } else if (idle_->renewing && !idle_->stop && queue_.empty()) {
      startIdleCommand();
      return;
    } else {
      auto ended = std::move(idle_->ended);
      idle_.reset();
      if (ended) {
        ended({});
      }
    }
    if (!alive.expired()) {
      pump();
    }
    return;
  }
  if (response.status.status == protocol::Status::kOk) {
    in_flight_->reply.status = std::move(response.status);
    finishCommand(std::move(in_flight_->reply));
  } else {
    finishCommand(std::unexpected(refusal(response.status, in_flight_->command.name)));
  }
}

void Session::handleContinuation(const protocol::Response& response) {
  if (!in_flight_) {
    fail(Error("imap.protocol", "the server sent a continuation while no command waited for one"));
    return;
  }
  if (in_flight_->is_idle) {
    idle_->established = true;
    deadline_->stop();
    renew_->start(settings_.timeouts.idle_renew, [this] {
      if (idle_) {
        idle_->renewing = true;
        sendDone();
      }
    });
    if (idle_->stop) {
      sendDone();
    }
    return;
  }
  if (in_flight_->on_continuation) {
    in_flight_->on_continuation(response.continuation);
    return;
  }
  if (in_flight_->next_chunk >= in_flight_->command.chunks.size()) {
    fail(Error("imap.protocol", "the server sent a continuation that " + in_flight_->command.name +
                                    " did not ask for"));
    return;
  }
  sendNextChunk();
}

void Session::handleUntagged(protocol::Response& response) {
  if (auto* status = std::get_if<protocol::StatusResponse>(&response.data)) {
    std::weak_ptr<bool> alive = alive_;
    noteStatus(*status);
    if (alive.expired()) {
      return;
    }
    if (status->status == protocol::Status::kBye) {
      // The server closes next; onClose reports it with this text.
      bye_text_ = statusText(*status);
      return;
    }
  } else if (auto* caps = std::get_if<protocol::CapabilityData>(&response.data)) {
    capabilities_ = caps->capabilities;
  }
  if (in_flight_ && !in_flight_->is_idle) {
    if (in_flight_->each) {
      if (auto* fetch = std::get_if<protocol::FetchData>(&response.data)) {
        in_flight_->each(std::move(*fetch));
        return;
      }
    }
    in_flight_->reply.untagged.push_back(std::move(response.data));
    return;
  }
  observer_.onSessionPush(*this, response.data);
}

// --- login ---------------------------------------------------------------------------------------

namespace {

// A command without arguments.
Session::Build bare(const char* name) {
  return [name](const std::string& tag, LiteralMode mode) {
    return CommandBuilder(tag, name, mode).build();
  };
}

} // namespace

void Session::loginStep(Build build, Done<CommandReply> done,
                        std::function<void(const std::string&)> on_continuation) {
  auto pending = std::make_unique<Pending>();
  pending->internal = true;
  pending->timeout = settings_.timeouts.login;
  pending->build = std::move(build);
  pending->done = std::move(done);
  pending->on_continuation = std::move(on_continuation);
  enqueue(std::move(pending), true);
}

void Session::loginCapability(void (Session::*next)()) {
  if (!capabilities_.empty()) {
    (this->*next)();
    return;
  }
  loginStep(bare("CAPABILITY"), [this, next](Result<CommandReply> r) {
    if (!r) {
      fail(r.error());
      return;
    }
    if (capabilities_.empty()) {
      fail(Error("imap.protocol", "the server answered CAPABILITY without its capabilities"));
      return;
    }
    (this->*next)();
  });
}

void Session::loginStartTls() {
  if (settings_.tls != config::TlsMode::kStarttls || conn_->tlsActive()) {
    loginAuthenticate();
    return;
  }
  if (!hasCapability("STARTTLS")) {
    fail(Error("imap.starttls_unavailable", "the server does not offer STARTTLS",
               "set the mailbox's imap.tls to implicit (port 993) or none, or enable STARTTLS on "
               "the server; mailgate never sends credentials in cleartext when STARTTLS is asked"));
    return;
  }
  loginStep(bare("STARTTLS"), [this](Result<CommandReply> r) {
    if (!r) {
      fail(r.error());
      return;
    }
    // RFC 9051 section 6.2.1: whatever came after the OK in cleartext is not to be trusted.
    parser_.discardBuffered();
    tls_pending_ = true;
    capabilities_.clear();
    armDeadline(settings_.timeouts.login);
    conn_->startTls(settings_.tls_context, {}, [this](Result<void> done) {
      tls_pending_ = false;
      if (!done) {
        return; // onClose follows with the handshake's error
      }
      loginCapability(&Session::loginStartTls); // TLS is on now: that step moves to the login
    });
  });
}

void Session::loginAuthenticate() {
  if (settings_.auth == AuthKind::kXOAuth2) {
    if (!hasCapability("AUTH=XOAUTH2")) {
      fail(Error("imap.auth_unavailable", "the server does not offer AUTHENTICATE XOAUTH2",
                 "connect this mailbox with an App Password, or check the IMAP server"));
      return;
    }
    if (!settings_.tokens) {
      fail(Error("imap.no_token_source", "no OAuth2 token source for this mailbox",
                 "OAuth2 mailboxes need the tenant's oauth settings and a refresh token"));
      return;
    }
    std::weak_ptr<bool> alive = alive_;
    settings_.tokens->token([this, alive](Result<Secret> token) {
      if (alive.expired() || state_ != State::kLogin) {
        return;
      }
      if (!token) {
        fail(token.error());
        return;
      }
      loginWithCredential("user=" + settings_.username + "\x01" + "auth=Bearer " + token->reveal() +
                          "\x01\x01");
    });
    return;
  }
  if (hasCapability("AUTH=PLAIN")) {
    loginWithCredential(std::string(1, '\0') + settings_.username + std::string(1, '\0') +
                        settings_.password.reveal());
    return;
  }
  if (hasCapability("LOGINDISABLED")) {
    fail(Error("imap.login_disabled",
               "the server offers neither AUTHENTICATE PLAIN nor LOGIN (LOGINDISABLED)",
               settings_.tls == config::TlsMode::kNone
                   ? "the server wants TLS first: set imap.tls to implicit or starttls"
                   : "password logins are off on this server: connect the mailbox with OAuth2"));
    return;
  }
  capabilities_.clear(); // they may change with the login
  loginStep(
      [this](const std::string& tag, LiteralMode mode) {
        return CommandBuilder(tag, "LOGIN", mode)
            .string(settings_.username)
            .string(settings_.password.reveal())
            .build();
      },
      [this](Result<CommandReply> r) {
        if (!r) {
          fail(loginRefusal(r.error(),
                            "check the mailbox's App Password; a new one can take hours to work"));
          return;
        }
        loginCapability(&Session::loginEnable);
      });
}

// AUTHENTICATE PLAIN or XOAUTH2: with SASL-IR in the command, else after the first "+".
void Session::loginWithCredential(const std::string& credential) {
  bool xoauth2 = settings_.auth == AuthKind::kXOAuth2;
  std::string mechanism = xoauth2 ? "XOAUTH2" : "PLAIN";
  bool sasl_ir = hasCapability("SASL-IR");
  auto encoded = std::make_shared<std::string>(base64Encode(credential));
  auto build = [mechanism, sasl_ir, encoded](const std::string& tag, LiteralMode) {
    protocol::Command command;
    command.tag = tag;
    command.name = "AUTHENTICATE";
    std::string line = tag + " AUTHENTICATE " + mechanism;
    command.redacted = line + (sasl_ir ? " <credential>" : "");
    if (sasl_ir) {
      line += ' ';
      line += encoded->empty() ? "=" : *encoded;
    }
    line += "\r\n";
    command.chunks.push_back(std::move(line));
    return Result<protocol::Command>(std::move(command));
  };
  // Without SASL-IR the first "+" asks for the credential. Any later "+" is the server's error
  // challenge (XOAUTH2 sends a base64 JSON status): the client answers with an empty line and the
  // tagged NO follows (RFC 7628 section 3.2.3).
  auto sent = std::make_shared<bool>(sasl_ir);
  auto on_continuation = [this, encoded, sent](const std::string&) {
    if (!*sent) {
      *sent = true;
      conn_->write(protocol::saslResponseLine(base64Decode(*encoded).value_or(std::string())));
      return;
    }
    conn_->write("\r\n");
  };
  capabilities_.clear(); // they may change with the login
  loginStep(
      std::move(build),
      [this, xoauth2](Result<CommandReply> r) {
        if (!r) {
          fail(loginRefusal(
              r.error(), xoauth2
                             ? "the access token was refused: reconnect the mailbox with Microsoft"
                             : "check the mailbox's App Password; a new one can take hours to "
                               "work"));
          return;
        }
        loginCapability(&Session::loginEnable);
      },
      std::move(on_continuation));
}

void Session::loginEnable() {
  std::vector<std::string> wanted;
  if (hasCapability("ENABLE")) {
    for (const auto& name : settings_.enable) {
      if (hasCapability(name)) {
        wanted.push_back(name);
      }
    }
  }
  if (wanted.empty()) {
    loginId();
    return;
  }
  loginStep(
      [wanted](const std::string& tag, LiteralMode mode) {
        CommandBuilder builder(tag, "ENABLE", mode);
        for (const auto& name : wanted) {
          builder.atom(name);
        }
        return std::move(builder).build();
      },
      // Some servers advertise ENABLE and then refuse it: the session works without.
      [this](Result<CommandReply>) { loginId(); });
}

void Session::loginId() {
  if (!hasCapability("ID")) {
    becomeReady();
    return;
  }
  std::string fields = "(\"name\" \"" + idSafe(settings_.client_name) + "\" \"version\" \"" +
                       idSafe(settings_.client_version) + "\")";
  loginStep(
      [fields](const std::string& tag, LiteralMode mode) {
        return CommandBuilder(tag, "ID", mode).raw(fields).build();
      },
      [this](Result<CommandReply>) { becomeReady(); });
}

void Session::becomeReady() {
  state_ = State::kReady;
  deadline_->stop();
  log_->debug("imap={} {}: logged in ({} capabilities)", settings_.id, settings_.mailbox,
              capabilities_.size());
  std::weak_ptr<bool> alive = alive_;
  observer_.onSessionReady(*this);
  if (!alive.expired()) {
    pump();
  }
}

// --- commands ------------------------------------------------------------------------------------

bool Session::quiet() const {
  return state_ == State::kReady && !in_flight_ && queue_.empty();
}

bool Session::hasCapability(std::string_view name) const {
  return std::ranges::any_of(capabilities_, [&](const std::string& c) { return iequals(c, name); });
}

protocol::LiteralMode Session::literalMode() const {
  if (hasCapability("LITERAL+")) {
    return LiteralMode::kPlus;
  }
  if (hasCapability("LITERAL-")) {
    return LiteralMode::kMinus;
  }
  return LiteralMode::kSync;
}

std::string Session::nextTag() {
  return "A" + std::to_string(++next_tag_);
}

void Session::enqueue(std::unique_ptr<Pending> pending, bool front) {
  if (state_ == State::kClosing || state_ == State::kClosed) {
    auto done = std::move(pending->done);
    Error error = end_ ? end_->error : Error("imap.closed", "the IMAP session is closed");
    loop_.defer([done = std::move(done), error = std::move(error)] {
      if (done) {
        done(std::unexpected(error));
      }
    });
    return;
  }
  if (pending->timeout.count() == 0) {
    pending->timeout = settings_.timeouts.command;
  }
  if (idle_ && !front) {
    stopIdle(); // a command ends IDLE; its owner issues idle() again when it wants
  }
  if (front) {
    queue_.push_front(std::move(pending));
  } else {
    queue_.push_back(std::move(pending));
  }
  pump();
}

void Session::pump() {
  if (in_flight_ || queue_.empty() || !conn_ || tls_pending_) {
    return;
  }
  if (state_ != State::kReady && !(state_ == State::kLogin && queue_.front()->internal)) {
    return;
  }
  if (idle_ && idle_->sent) {
    return; // the IDLE ends first; its OK pumps again
  }
  in_flight_ = std::move(queue_.front());
  queue_.pop_front();
  auto built = in_flight_->build(nextTag(), literalMode());
  if (!built) {
    auto pending = std::move(in_flight_);
    std::weak_ptr<bool> alive = alive_;
    if (pending->done) {
      pending->done(std::unexpected(built.error()));
    }
    if (!alive.expired()) {
      pump();
    }
    return;
  }
  in_flight_->command = std::move(*built);
  if (in_flight_->is_idle) {
    idle_->sent = true;
  }
  log_->trace("imap={} {}: C: {}", settings_.id, settings_.mailbox,
              in_flight_->log_text.empty() ? in_flight_->command.redacted : in_flight_->log_text);
  sendNextChunk();
  if (!in_flight_->is_idle || !idle_->established) {
    armDeadline(in_flight_->timeout);
  }
}

void Session::sendNextChunk() {
  auto& chunks = in_flight_->command.chunks;
  if (in_flight_->next_chunk < chunks.size()) {
    conn_->write(chunks[in_flight_->next_chunk]);
    // The bytes are with the connection now; a large APPEND literal need not be held twice.
    std::string().swap(chunks[in_flight_->next_chunk]);
    ++in_flight_->next_chunk;
  }
}

void Session::finishCommand(Result<CommandReply> result) {
  auto pending = std::move(in_flight_);
  std::weak_ptr<bool> alive = alive_;
  if (pending->done) {
    pending->done(std::move(result));
  }
  if (!alive.expired()) {
    pump();
  }
}

void Session::run(Build build, Done<CommandReply> done) {
  auto pending = std::make_unique<Pending>();
  pending->build = std::move(build);
  pending->done = std::move(done);
  enqueue(std::move(pending));
}

void Session::list(Done<std::vector<FolderInfo>> done) {
  run(
      [](const std::string& tag, LiteralMode mode) {
        return CommandBuilder(tag, "LIST", mode).string("").string("*").build();
      },
      [done = std::move(done)](Result<CommandReply> r) {
        if (!r) {
          done(std::unexpected(r.error()));
          return;
        }
        std::vector<FolderInfo> folders;
        for (auto& data : r->untagged) {
          auto* list = std::get_if<protocol::ListData>(&data);
          if (!list) {
            continue;
          }
          FolderInfo folder;
          folder.wire_name = list->name;
          folder.name = protocol::decodeMailboxName(list->name).value_or(list->name);
          folder.attributes = std::move(list->attributes);
          folder.delimiter = list->delimiter;
          folders.push_back(std::move(folder));
        }
        done(std::move(folders));
      });
}

void Session::select(std::string mailbox, bool read_only, Done<SelectInfo> done) {
  bool utf8 = hasCapability("UTF8=ACCEPT") && false; // ENABLE UTF8=ACCEPT is not asked for
  run(
      [mailbox, read_only, utf8](const std::string& tag, LiteralMode mode) {
        return CommandBuilder(tag, read_only ? "EXAMINE" : "SELECT", mode)
            .mailbox(mailbox, utf8)
            .build();
      },
      [this, mailbox, read_only, done = std::move(done)](Result<CommandReply> r) {
        if (!r) {
          selected_.clear(); // a failed SELECT leaves no mailbox selected (RFC 9051 6.3.2)
          done(std::unexpected(r.error()));
          return;
        }
        SelectInfo info;
        info.mailbox = mailbox;
        info.read_only = read_only;
        for (auto& data : r->untagged) {
          if (auto* n = std::get_if<protocol::NumberData>(&data)) {
            if (n->kind == protocol::NumberData::Kind::kExists) {
              info.exists = n->number;
            }
          } else if (auto* flags = std::get_if<protocol::FlagsData>(&data)) {
            info.flags = std::move(flags->flags);
          } else if (auto* status = std::get_if<protocol::StatusResponse>(&data)) {
            if (!status->code) {
              continue;
            }
            const auto& code = *status->code;
            if (code.name == "UIDVALIDITY") {
              info.uidvalidity = code.number;
            } else if (code.name == "UIDNEXT") {
              info.uidnext = code.number;
            } else if (code.name == "HIGHESTMODSEQ") {
              info.highest_modseq = code.modseq;
            }
          }
        }
        if (r->status.code && r->status.code->name == "READ-ONLY") {
          info.read_only = true;
        }
        selected_ = mailbox;
        done(std::move(info));
      });
}

void Session::uidSearch(std::string criteria, Done<std::vector<uint32_t>> done) {
  run(
      [criteria](const std::string& tag, LiteralMode mode) {
        return CommandBuilder(tag, "UID", mode).atom("SEARCH").raw(criteria).build();
      },
      [done = std::move(done)](Result<CommandReply> r) {
        if (!r) {
          done(std::unexpected(r.error()));
          return;
        }
        std::vector<uint32_t> uids;
        for (auto& data : r->untagged) {
          if (auto* search = std::get_if<protocol::SearchData>(&data)) {
            uids.insert(uids.end(), search->numbers.begin(), search->numbers.end());
          }
        }
        std::ranges::sort(uids);
        auto dup = std::ranges::unique(uids);
        uids.erase(dup.begin(), dup.end());
        done(std::move(uids));
      });
}

void Session::uidFetch(protocol::SequenceSet uids, std::string items,
                       std::function<void(protocol::FetchData&&)> each, Done<void> done) {
  auto pending = std::make_unique<Pending>();
  pending->build = [uids = std::move(uids), items](const std::string& tag, LiteralMode mode) {
    return CommandBuilder(tag, "UID", mode).atom("FETCH").sequence(uids).raw(items).build();
  };
  pending->each = std::move(each);
  pending->done = [done = std::move(done)](Result<CommandReply> r) {
    if (!r) {
      done(std::unexpected(r.error()));
      return;
    }
    done({});
  };
  enqueue(std::move(pending));
}

void Session::append(std::string mailbox, std::vector<std::string> flags, std::string message,
                     Done<AppendResult> done) {
  std::string flag_list = "(";
  for (const auto& flag : flags) {
    if (flag_list.size() > 1) {
      flag_list += ' ';
    }
    flag_list += flag;
  }
  flag_list += ')';
  auto body = std::make_shared<std::string>(std::move(message));
  run(
      [mailbox, flag_list, body](const std::string& tag, LiteralMode mode) {
        return CommandBuilder(tag, "APPEND", mode)
            .mailbox(mailbox)
            .raw(flag_list)
            .literal(*body)
            .build();
      },
      [done = std::move(done)](Result<CommandReply> r) {
        if (!r) {
          done(std::unexpected(r.error()));
          return;
        }
        AppendResult result;
        if (r->status.code && r->status.code->name == "APPENDUID") {
          result.uidvalidity = r->status.code->uidvalidity;
          if (!r->status.code->uids.empty()) {
            result.uid = r->status.code->uids.ranges().front().first;
          }
        }
        done(result);
      });
}

void Session::noop(Done<void> done) {
  run([](const std::string& tag,
         LiteralMode mode) { return CommandBuilder(tag, "NOOP", mode).build(); },
      [this, done = std::move(done)](Result<CommandReply> r) {
        if (!r) {
          done(std::unexpected(r.error()));
          return;
        }
        // NOOP's answer may carry what IDLE would have pushed.
        for (auto& data : r->untagged) {
          observer_.onSessionPush(*this, data);
        }
        done({});
      });
}

// --- IDLE ----------------------------------------------------------------------------------------

void Session::idle(Done<void> ended) {
  if (idle_) {
    loop_.defer([ended = std::move(ended)] {
      ended(std::unexpected(Error("imap.state", "IDLE is already on")));
    });
    return;
  }
  idle_ = std::make_unique<IdleState>();
  idle_->ended = std::move(ended);
  startIdleCommand();
}

void Session::startIdleCommand() {
  idle_->sent = false;
  idle_->established = false;
  idle_->done_sent = false;
  idle_->renewing = false;
  auto pending = std::make_unique<Pending>();
  pending->is_idle = true;
  pending->build = [](const std::string& tag, LiteralMode mode) {
    return CommandBuilder(tag, "IDLE", mode).build();
  };
  if (state_ == State::kClosing || state_ == State::kClosed) {
    return;
  }
  pending->timeout = settings_.timeouts.command;
  queue_.push_back(std::move(pending));
  pump();
}

void Session::sendDone() {
  if (!idle_) {
    return;
  }
  if (!idle_->established) {
    idle_->stop = idle_->stop || !idle_->renewing;
    return; // DONE goes once the server said "+"
  }
  if (idle_->done_sent) {
    return;
  }
  idle_->done_sent = true;
  renew_->stop();
  conn_->write("DONE\r\n");
  armDeadline(settings_.timeouts.command);
}

void Session::stopIdle() {
  if (!idle_) {
    return;
  }
  idle_->stop = true;
  if (!idle_->sent) {
    // Still queued: take it out and end at once (in a later turn).
    std::erase_if(queue_, [](const std::unique_ptr<Pending>& p) { return p->is_idle; });
    auto ended = std::move(idle_->ended);
    idle_.reset();
    loop_.defer([ended = std::move(ended)] {
      if (ended) {
        ended({});
      }
    });
    return;
  }
  sendDone();
}

// --- the end -------------------------------------------------------------------------------------

void Session::logout() {
  if (state_ == State::kClosing || state_ == State::kClosed) {
    return;
  }
  if (!conn_ || state_ != State::kReady) {
    fail(Error("imap.logout", "the session was logged out"));
    return;
  }
  std::weak_ptr<bool> alive = alive_;
  Error error("imap.logout", "the session was logged out");
  end_ = SessionEnd{error, advice_, true};
  state_ = State::kClosing;
  // IDLE sent (even if its "+" is still on the way): DONE first, or the server reads LOGOUT as
  // a broken DONE. The connection closes right after, so nothing waits on the order of answers.
  bool in_idle = idle_ && idle_->sent && !idle_->done_sent;
  failQueued(error);
  if (alive.expired()) {
    return;
  }
  if (in_idle) {
    conn_->write("DONE\r\n"); // LOGOUT is a command: IDLE ends first
  }
  conn_->write(nextTag() + " LOGOUT\r\n");
  conn_->setCloseTimeout(settings_.timeouts.logout);
  conn_->close();
  deadline_->start(settings_.timeouts.logout, [this] {
    if (conn_) {
      conn_->abort();
    }
  });
}

void Session::fail(Error error) {
  if (state_ == State::kClosed || (state_ == State::kClosing && end_)) {
    return;
  }
  bool logged_in = state_ == State::kReady;
  state_ = State::kClosing;
  end_ = SessionEnd{std::move(error), advice_, logged_in};
  deadline_->stop();
  renew_->stop();
  connecting_.reset();
  if (conn_) {
    conn_->abort(); // onClose follows and reports end_
    return;
  }
  loop_.defer([this, alive = std::weak_ptr<bool>(alive_)] {
    if (!alive.expired()) {
      finishClose();
    }
  });
}

void Session::onClose(const Error* reason) {
  if (!end_) {
    bool logged_in = state_ == State::kReady;
    Error error = reason ? *reason
                  : !bye_text_.empty()
                      ? Error("imap.bye", "the server ended the session: " + bye_text_)
                      : Error("imap.closed", "the server closed the connection");
    end_ = SessionEnd{std::move(error), advice_, logged_in};
  } else if (reason && end_->error.code == "imap.logout") {
    log_->debug("imap={} {}: closing after LOGOUT: {}", settings_.id, settings_.mailbox,
                reason->describe());
  }
  finishClose();
}

void Session::failQueued(const Error& error) {
  std::weak_ptr<bool> alive = alive_;
  std::deque<std::unique_ptr<Pending>> pending;
  pending.swap(queue_);
  if (in_flight_) {
    pending.push_front(std::move(in_flight_));
  }
  for (auto& p : pending) {
    if (p->done) {
      p->done(std::unexpected(error));
      if (alive.expired()) {
        return;
      }
    }
  }
  if (idle_) {
    auto ended = std::move(idle_->ended);
    idle_.reset();
    if (ended) {
      ended(std::unexpected(error));
    }
  }
}

void Session::finishClose() {
  if (state_ == State::kClosed) {
    return;
  }
  state_ = State::kClosed;
  deadline_->stop();
  renew_->stop();
  std::weak_ptr<bool> alive = alive_;
  failQueued(end_->error);
  if (alive.expired()) {
    return;
  }
  if (end_->error.code != "imap.logout") {
    log_->info("imap={} {}: session ended: {}", settings_.id, settings_.mailbox,
               end_->error.describe());
  }
  SessionEnd end = *end_;
  observer_.onSessionClosed(*this, end);
}

} // namespace mailgate::imap
