#include "tests/imap/scripted_server.h"

#include "base/base64.h"

#include <algorithm>
#include <gtest/gtest.h>

namespace mailgate::imap::test {

namespace {

// The quoted strings of a command line, unescaped (what LOGIN with quoted arguments carries).
std::vector<std::string> quotedArgs(const std::string& args) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] != '"') {
      continue;
    }
    std::string value;
    for (++i; i < args.size() && args[i] != '"'; ++i) {
      if (args[i] == '\\' && i + 1 < args.size()) {
        ++i;
      }
      value += args[i];
    }
    out.push_back(std::move(value));
  }
  return out;
}

} // namespace

class ScriptedImapServer::Handler : public net::Connection::Handler {
public:
  Handler(ScriptedImapServer& server, Conn& conn) : server_(server), conn_(conn) {}
  void onRead(std::span<const char> data) override {
    conn_.in.append(data.data(), data.size());
    server_.process(conn_);
  }
  void onClose(const Error*) override {
    if (!closed_) {
      closed_ = true;
      --server_.open_now;
      server_.loggedIn(conn_); // no longer waiting to log in
    }
  }
  bool closed_ = false;

private:
  ScriptedImapServer& server_;
  Conn& conn_;
};

ScriptedImapServer::ScriptedImapServer(net::Loop& loop) : loop_(loop) {
  auto listener = net::Listener::listen(loop, net::Endpoint{"127.0.0.1", 0},
                                        [this](net::ConnectionPtr c) { onAccept(std::move(c)); });
  EXPECT_TRUE(listener.has_value());
  listener_ = std::move(*listener);
}

ScriptedImapServer::~ScriptedImapServer() {
  for (auto& c : conns_) {
    if (c->conn) {
      c->conn->setHandler(nullptr);
    }
  }
}

uint16_t ScriptedImapServer::port() const {
  return listener_->port();
}

void ScriptedImapServer::onAccept(net::ConnectionPtr conn) {
  ++accepted;
  ++open_now;
  max_open = std::max(max_open, open_now);
  ++not_logged_in;
  max_not_logged_in = std::max(max_not_logged_in, not_logged_in);
  auto c = std::make_unique<Conn>();
  c->conn = std::move(conn);
  auto handler = std::make_unique<Handler>(*this, *c);
  c->conn->setHandler(handler.get());
  if (send_greeting) {
    c->send(greeting);
  }
  conns_.push_back(std::move(c));
  handlers_.push_back(std::move(handler));
}

void ScriptedImapServer::loggedIn(Conn& conn) {
  if (!conn.counted_login) {
    conn.counted_login = true;
    --not_logged_in;
  }
}

void ScriptedImapServer::pushToIdlers(const std::string& text) {
  for (auto& c : conns_) {
    if (c->idling && c->conn && c->conn->isOpen()) {
      c->send(text);
    }
  }
}

int ScriptedImapServer::idling() const {
  return static_cast<int>(std::ranges::count_if(
      conns_, [](const auto& c) { return c->idling && c->conn && c->conn->isOpen(); }));
}

void ScriptedImapServer::dropAll() {
  for (auto& c : conns_) {
    if (c->conn) {
      c->conn->abort();
    }
  }
}

void ScriptedImapServer::stopListening() {
  listener_->stop();
}

void ScriptedImapServer::process(Conn& c) {
  for (;;) {
    if (c.literal_left > 0) {
      auto take = std::min<uint64_t>(c.literal_left, c.in.size());
      c.literal.append(c.in, 0, take);
      c.in.erase(0, take);
      c.literal_left -= take;
      if (c.literal_left > 0) {
        return;
      }
      continue; // the rest of the command line follows the literal
    }
    auto eol = c.in.find("\r\n");
    if (eol == std::string::npos) {
      return;
    }
    std::string line = c.in.substr(0, eol);
    c.in.erase(0, eol + 2);
    if (c.idling) {
      if (line == "DONE") {
        ++dones;
        if (c.ignore_done) {
          continue;
        }
        c.idling = false;
        c.send(c.idle_tag + " OK IDLE terminated\r\n");
      } else {
        c.send("* BAD expected DONE\r\n");
      }
      continue;
    }
    if (c.auth_continuation) {
      c.auth_continuation = false;
      auto decoded = base64Decode(line).value_or("");
      if (decoded == std::string(1, '\0') + user + std::string(1, '\0') + password) {
        ++logins;
        loggedIn(c);
        c.authenticated = true;
        c.send(c.auth_tag + " OK [CAPABILITY " + capabilities + "] logged in\r\n");
      } else {
        c.send(c.auth_tag + " NO [AUTHENTICATIONFAILED] AUTHENTICATE failed.\r\n");
      }
      continue;
    }
    c.pending_line += line;
    // A literal announced at the end of the line: "{n}" (synchronizing) or "{n+}".
    if (!c.pending_line.empty() && c.pending_line.back() == '}') {
      auto open = c.pending_line.rfind('{');
      if (open != std::string::npos) {
        std::string n = c.pending_line.substr(open + 1, c.pending_line.size() - open - 2);
        bool plus = !n.empty() && n.back() == '+';
        if (plus) {
          n.pop_back();
        }
        c.literal_left = std::stoull(n);
        c.pending_line.resize(open);
        if (!plus) {
          ++continuations;
          c.send("+ Ready for literal data\r\n");
        }
        continue;
      }
    }
    std::string full = std::move(c.pending_line);
    c.pending_line.clear();
    auto sp = full.find(' ');
    std::string tag = full.substr(0, sp);
    std::string rest = sp == std::string::npos ? "" : full.substr(sp + 1);
    auto sp2 = rest.find(' ');
    std::string name = rest.substr(0, sp2);
    std::string args = sp2 == std::string::npos ? "" : rest.substr(sp2 + 1);
    std::ranges::transform(name, name.begin(), [](char ch) { return std::toupper(ch); });
    commands.push_back(name + (args.empty() ? "" : " " + args));
    command(c, tag, name, args);
    c.literal.clear();
  }
}

void ScriptedImapServer::command(Conn& c, const std::string& tag, const std::string& name,
                                 const std::string& args) {
  if (hook && hook(c, tag, name, args)) {
    return;
  }
  if (name == "CAPABILITY") {
    c.send("* CAPABILITY " + capabilities + "\r\n" + tag + " OK CAPABILITY completed\r\n");
  } else if (name == "AUTHENTICATE") {
    if (args == "PLAIN") {
      c.auth_continuation = true;
      c.auth_tag = tag;
      c.send("+ \r\n");
      return;
    }
    auto decoded = base64Decode(args.substr(args.find(' ') + 1)).value_or("");
    if (decoded == std::string(1, '\0') + user + std::string(1, '\0') + password) {
      ++logins;
      loggedIn(c);
      c.authenticated = true;
      c.send(tag + " OK [CAPABILITY " + capabilities + "] logged in\r\n");
    } else {
      c.send(tag + " NO [AUTHENTICATIONFAILED] AUTHENTICATE failed.\r\n");
    }
  } else if (name == "LOGIN") {
    if (quotedArgs(args) == std::vector<std::string>{user, password}) {
      ++logins;
      loggedIn(c);
      c.authenticated = true;
      c.send(tag + " OK LOGIN completed\r\n");
    } else {
      c.send(tag + " NO LOGIN failed.\r\n");
    }
  } else if (name == "ID") {
    c.send("* ID (\"name\" \"scripted\")\r\n" + tag + " OK ID completed\r\n");
  } else if (name == "LIST") {
    c.send("* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
           "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n"
           "* LIST (\\HasNoChildren \\Drafts) \"/\" Drafts\r\n" +
           tag + " OK LIST completed\r\n");
  } else if (name == "SELECT" || name == "EXAMINE") {
    c.selected = args;
    c.send("* 3 EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen \\Answered)\r\n"
           "* OK [UIDVALIDITY 42] UIDs valid\r\n* OK [UIDNEXT 7] next\r\n" +
           tag + (name == "EXAMINE" ? " OK [READ-ONLY] done\r\n" : " OK [READ-WRITE] done\r\n"));
  } else if (name == "NOOP") {
    c.send(tag + " OK NOOP completed\r\n");
  } else if (name == "IDLE") {
    c.idling = true;
    c.idle_tag = tag;
    c.send("+ idling\r\n");
  } else if (name == "APPEND") {
    appended.push_back(c.literal);
    c.send(tag + " OK [APPENDUID 42 " + std::to_string(appended.size()) + "] APPEND completed\r\n");
  } else if (name == "LOGOUT") {
    c.send("* BYE logging out\r\n" + tag + " OK LOGOUT completed\r\n");
    c.conn->close();
  } else {
    c.send(tag + " BAD unknown command\r\n");
  }
}

} // namespace mailgate::imap::test
