// One IMAP client session over net/: connect (implicit TLS, STARTTLS or cleartext), greeting,
// CAPABILITY, login (AUTHENTICATE PLAIN or LOGIN with an App Password; AUTHENTICATE XOAUTH2 with
// SASL-IR and a token from a TokenSource), ENABLE and ID where offered, then commands one at a
// time, and IDLE renewed before Microsoft 365 drops it.
//
// Threading: loop thread only. Callbacks (the Observer's and each command's `done`) run on the
// loop thread and never from inside a call made on the Session: start(), the commands, idle(),
// stopIdle() and logout() only queue work. A callback may destroy the Session; no callback fires
// after the destructor returns, and commands still queued are dropped without their `done`.
//
// Credentials (the password, the token, the SASL strings) are written to the socket only: no log
// line, error or status produced here contains them.
#pragma once

#include "base/error.h"
#include "base/secret.h"
#include "base/token_source.h"
#include "config/config.h"
#include "imap/protocol/command_builder.h"
#include "imap/protocol/response.h"
#include "imap/protocol/response_parser.h"
#include "imap/protocol/server_advice.h"
#include "net/connection.h"
#include "net/connector.h"
#include "net/endpoint.h"
#include "net/timer.h"

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <spdlog/logger.h>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::net {
class Loop;
}

namespace mailgate::imap {

struct SessionTimeouts {
  // TCP connect (resolution and every address), then the implicit TLS handshake.
  std::chrono::milliseconds connect{std::chrono::seconds(30)};
  // The greeting, and each step of the login (STARTTLS, CAPABILITY, AUTHENTICATE, ENABLE, ID).
  std::chrono::milliseconds login{std::chrono::seconds(30)};
  // A command's tagged answer, counted from the last byte received: a long FETCH never times out
  // while data still flows.
  std::chrono::milliseconds command{std::chrono::seconds(60)};
  // IDLE is ended with DONE and issued again this often. Microsoft 365 drops IDLE connections
  // silently after about 29 minutes (RFC 9051 says servers may after 30): 10 minutes keeps well
  // inside, and the DONE's answer proves the session is alive.
  std::chrono::milliseconds idle_renew{std::chrono::minutes(10)};
  // LOGOUT's answer; the session is closed either way.
  std::chrono::milliseconds logout{std::chrono::seconds(5)};
};

enum class AuthKind {
  kPassword, // App Password: AUTHENTICATE PLAIN where offered, else LOGIN
  kXOAuth2,  // AUTHENTICATE XOAUTH2 with an access token from `tokens`
};

struct SessionSettings {
  uint64_t id = 0;     // unique per process: "imap=<id>" on log lines
  std::string mailbox; // the mailbox address, for log lines
  net::Endpoint endpoint;
  config::TlsMode tls = config::TlsMode::kImplicit;
  net::TlsContextPtr tls_context; // a client context; required unless tls is kNone
  std::string bind_address;       // egress.bind_address; empty: the kernel chooses
  std::string username;           // the login name (the mailbox's primary address)
  AuthKind auth = AuthKind::kPassword;
  Secret password;                     // kPassword
  std::shared_ptr<TokenSource> tokens; // kXOAuth2
  std::string client_name = "mailgate";
  std::string client_version;
  // Capabilities to ENABLE when the server offers ENABLE and them (RFC 5161).
  std::vector<std::string> enable{"CONDSTORE"};
  SessionTimeouts timeouts;
  protocol::ParserLimits limits;
};

// A command's tagged answer and the untagged data that arrived while it ran.
struct CommandReply {
  protocol::StatusResponse status; // always OK: NO and BAD come as errors
  std::vector<protocol::UntaggedData> untagged;
};

struct SelectInfo {
  std::string mailbox; // UTF-8, as asked
  bool read_only = false;
  uint32_t exists = 0;
  std::optional<uint32_t> uidvalidity, uidnext;
  std::optional<uint64_t> highest_modseq; // CONDSTORE servers only
  std::vector<std::string> flags;
};

struct FolderInfo {
  std::string name;      // UTF-8 (decoded from modified UTF-7)
  std::string wire_name; // as the server sent it
  std::vector<std::string> attributes;
  std::optional<char> delimiter;
  [[nodiscard]] bool selectable() const;
};

struct AppendResult {
  std::optional<uint32_t> uidvalidity, uid; // from [APPENDUID] when the server has UIDPLUS
};

// Why a session ended, for the pool's decisions: the error, and what the server asked for.
struct SessionEnd {
  Error error;
  protocol::Advice advice; // kNone unless a status response asked for something
  bool logged_in = false;  // the session had reached ready
};

class Session;
using SessionPtr = std::unique_ptr<Session>;

class Session : private net::Connection::Handler {
public:
  class Observer {
  public:
    virtual ~Observer() = default;
    // Logged in; capabilities() holds the post-login list. Commands may be issued from now on
    // (they may also have been queued before).
    virtual void onSessionReady(Session& session) = 0;
    // The session is over (exactly once, unless destroyed first). The Session may be destroyed
    // inside. Commands still queued were failed with the same error before this call.
    virtual void onSessionClosed(Session& session, const SessionEnd& end) = 0;
    // Untagged data outside any command: IDLE pushes (EXISTS, EXPUNGE, FETCH FLAGS, VANISHED)
    // and unsolicited notices.
    virtual void onSessionPush(Session& /*session*/, const protocol::UntaggedData& /*data*/) {}
    // A status response (tagged or untagged) asked for something: throttling, unavailability.
    // Called as it arrives; the command's own result follows separately.
    virtual void onSessionAdvice(Session& /*session*/, const protocol::Advice& /*advice*/) {}
  };

  template <typename T> using Done = std::function<void(Result<T>)>;
  // Builds a command for `tag`, sending literals as `mode` says (the server's LITERAL+/-).
  using Build =
      std::function<Result<protocol::Command>(const std::string& tag, protocol::LiteralMode mode)>;

  Session(net::Loop& loop, SessionSettings settings, Observer& observer);
  ~Session() override;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Connects and logs in; onSessionReady or onSessionClosed follows. Call once.
  void start();

  // Commands run one at a time, in the order given; a command issued while IDLE is on ends IDLE
  // first (idle()'s `ended` is called, with success). `done` gets the reply, or an error:
  // "imap.no" / "imap.bad" (the server refused; message holds its text), or the session's end
  // error when it closed first. Issuing commands after the session closed fails them (in a later
  // turn) with "imap.closed".
  void run(Build build, Done<CommandReply> done);
  void list(Done<std::vector<FolderInfo>> done); // LIST "" "*"
  // SELECT or EXAMINE a mailbox given in UTF-8.
  void select(std::string mailbox, bool read_only, Done<SelectInfo> done);
  // UID SEARCH with criteria we build ourselves (US-ASCII: Microsoft 365 refuses other charsets).
  void uidSearch(std::string criteria, Done<std::vector<uint32_t>> done);
  // UID FETCH `uids` `items` ("(UID FLAGS RFC822.SIZE)"); each FETCH response goes to `each` as it
  // arrives (not collected), so a large fetch costs one message's memory at a time.
  void uidFetch(protocol::SequenceSet uids, std::string items,
                std::function<void(protocol::FetchData&&)> each, Done<void> done);
  // APPEND `message` to `mailbox` (UTF-8) with `flags` ("\\Seen"); a LITERAL+ server takes it in
  // one write, others after their continuation.
  void append(std::string mailbox, std::vector<std::string> flags, std::string message,
              Done<AppendResult> done);
  void noop(Done<void> done);

  // Enters IDLE (RFC 2177) on the selected mailbox; pushes go to Observer::onSessionPush. IDLE is
  // renewed every timeouts.idle_renew (DONE, then IDLE again); a renewal the server does not
  // answer in time ends the session ("imap.timeout"). `ended` fires when IDLE stops: success after
  // stopIdle() or a queued command, an error when the server refused IDLE or the session closed.
  void idle(Done<void> ended);
  // Ends IDLE (DONE). Harmless when not idling.
  void stopIdle();

  // LOGOUT, then close. onSessionClosed follows with "imap.logout". Queued commands fail.
  void logout();

  [[nodiscard]] uint64_t id() const { return settings_.id; }
  [[nodiscard]] bool ready() const { return state_ == State::kReady; }
  // Ready and neither a command nor IDLE in progress.
  [[nodiscard]] bool quiet() const;
  [[nodiscard]] bool idling() const { return idle_ != nullptr; }
  [[nodiscard]] bool hasCapability(std::string_view name) const; // case-insensitive
  [[nodiscard]] const std::vector<std::string>& capabilities() const { return capabilities_; }
  [[nodiscard]] const std::string& selected() const { return selected_; } // UTF-8; empty: none
  [[nodiscard]] const std::string& greeting() const { return greeting_; }
  [[nodiscard]] std::size_t bufferedBytes() const { return parser_.bufferedBytes(); }

private:
  enum class State { kIdle, kConnecting, kGreeting, kLogin, kReady, kClosing, kClosed };
  struct Pending;
  struct IdleState;

  // net::Connection::Handler
  void onRead(std::span<const char> data) override;
  void onClose(const Error* reason) override;

  void connected(Result<net::ConnectionPtr> result);
  void handleResponse(protocol::Response& response);
  void handleGreeting(protocol::Response& response);
  void handleTagged(protocol::Response& response);
  void handleContinuation(const protocol::Response& response);
  void handleUntagged(protocol::Response& response);
  void noteStatus(const protocol::StatusResponse& status);

  // Login steps, in order; each issues one command (or skips itself) and calls the next.
  // CAPABILITY runs when the list is not known (greeting, after STARTTLS, after the login).
  void loginStep(Build build, Done<CommandReply> done,
                 std::function<void(const std::string&)> on_continuation = {});
  void loginCapability(void (Session::*next)());
  void loginStartTls();
  void loginAuthenticate();
  void loginWithCredential(const std::string& credential);
  void loginEnable();
  void loginId();
  void becomeReady();

  // Queues a command built by `build`; `internal` ones (login steps) go first.
  void enqueue(std::unique_ptr<Pending> pending, bool front = false);
  void pump();          // sends the next command when none is in flight
  void sendNextChunk(); // of the command in flight
  void finishCommand(Result<CommandReply> result);
  void armDeadline(std::chrono::milliseconds timeout);
  void startIdleCommand();
  void sendDone();
  void fail(Error error);
  void failQueued(const Error& error); // every command, queued or in flight, and IDLE's `ended`
  void finishClose();                  // reports end_ to the observer (once)
  [[nodiscard]] protocol::LiteralMode literalMode() const;
  [[nodiscard]] std::string nextTag();

  net::Loop& loop_;
  SessionSettings settings_;
  Observer& observer_;
  std::shared_ptr<spdlog::logger> log_;
  State state_ = State::kIdle;
  net::PendingConnectPtr connecting_;
  net::ConnectionPtr conn_;
  protocol::ResponseParser parser_;
  net::TimerPtr deadline_;
  net::TimerPtr renew_;
  std::chrono::milliseconds deadline_timeout_{0};
  std::deque<std::unique_ptr<Pending>> queue_;
  std::unique_ptr<Pending> in_flight_;
  std::unique_ptr<IdleState> idle_;
  std::vector<std::string> capabilities_;
  std::string greeting_;
  std::string selected_;
  protocol::Advice advice_;       // the last non-trivial advice of this session
  std::optional<SessionEnd> end_; // set when the end is decided (by us or by onClose)
  std::string bye_text_;          // an untagged BYE's text: the server closes next
  uint32_t next_tag_ = 0;
  bool tls_pending_ = false; // STARTTLS accepted: bytes after its OK are discarded
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

} // namespace mailgate::imap
