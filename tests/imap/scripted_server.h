// A small IMAP server on the test's loop, for the session and pool tests: enough of RFC 9051 to
// log in, LIST, SELECT, NOOP, IDLE, APPEND (synchronizing and LITERAL+ literals) and LOGOUT, with
// hooks to answer any command differently (throttling texts, refusals, silence, garbage). It is a
// test double for unit tests only; the real peer is Dovecot (tests/integration).
#pragma once

#include "net/connection.h"
#include "net/listener.h"
#include "net/loop.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mailgate::imap::test {

class ScriptedImapServer {
public:
  struct Conn {
    net::ConnectionPtr conn;
    std::string in;
    uint64_t literal_left = 0;
    std::string pending_tag, pending_line, literal;
    bool idling = false;
    bool ignore_done = false; // DONE gets no answer (a connection that died silently)
    std::string idle_tag;
    bool authenticated = false;
    bool counted_login = false;     // taken out of not_logged_in (logged in or closed)
    bool auth_continuation = false; // AUTHENTICATE PLAIN waiting for the credential line
    std::string auth_tag;
    std::string selected;
    void send(const std::string& text) { conn->write(text); }
  };
  // Answers one command; return true when handled, false to let the default behaviour answer.
  // `args` is the line after "TAG COMMAND " (a literal's bytes are in conn.literal).
  using Hook = std::function<bool(Conn& conn, const std::string& tag, const std::string& command,
                                  const std::string& args)>;

  explicit ScriptedImapServer(net::Loop& loop);
  ~ScriptedImapServer();
  [[nodiscard]] uint16_t port() const;

  std::string greeting = "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR ID IDLE LITERAL+ "
                         "UIDPLUS] ready\r\n";
  std::string capabilities = "IMAP4rev1 AUTH=PLAIN SASL-IR ID IDLE LITERAL+ UIDPLUS";
  std::string user = "rep1@acme.example";
  std::string password = "app-password";
  bool send_greeting = true;
  Hook hook;

  // What happened, for assertions.
  int accepted = 0;
  int logins = 0;
  int open_now = 0;
  int max_open = 0;
  int not_logged_in = 0;             // connections open that have not logged in yet
  int max_not_logged_in = 0;         // the most at once
  std::vector<std::string> commands; // "COMMAND args" of every command, in order
  std::vector<std::string> appended; // APPEND literals
  int dones = 0;
  int continuations = 0; // "+" sent for synchronizing literals

  // Sessions in IDLE now.
  [[nodiscard]] int idling() const;

  // Pushes `text` to every session in IDLE.
  void pushToIdlers(const std::string& text);
  // Drops every connection without a word (a dead server).
  void dropAll();
  void stopListening();

private:
  void onAccept(net::ConnectionPtr conn);
  void loggedIn(Conn& conn);
  void process(Conn& conn);
  void command(Conn& conn, const std::string& tag, const std::string& name,
               const std::string& args);
  class Handler;
  net::Loop& loop_;
  net::ListenerPtr listener_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<std::unique_ptr<Handler>> handlers_;
};

} // namespace mailgate::imap::test
