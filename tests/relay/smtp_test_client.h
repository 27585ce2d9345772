// A small blocking SMTP client for the submission tests: one connection to 127.0.0.1, a 10 s
// guard on every read, AUTH PLAIN with its own base64 (independent of base/base64.h on purpose).
#pragma once

#include <arpa/inet.h>
#include <cstdint>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <unistd.h>

namespace mailgate::relay::test {

inline std::string base64(std::string_view in) {
  static constexpr char kChars[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(in[i]) << 16) |
                       (static_cast<uint8_t>(in[i + 1]) << 8) | static_cast<uint8_t>(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) {
      out += kChars[(v >> s) & 63];
    }
  }
  if (i + 1 == in.size()) {
    const uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    out += kChars[(v >> 18) & 63];
    out += kChars[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8);
    out += kChars[(v >> 18) & 63];
    out += kChars[(v >> 12) & 63];
    out += kChars[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

// One SMTP client connection, blocking, with a 10 s guard on every read.
class Client {
public:
  explicit Client(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  }
  ~Client() { close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void send(const std::string& text) {
    const std::string line = text + "\r\n";
    EXPECT_EQ(::send(fd_, line.data(), line.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(line.size()));
  }
  // The next complete reply (every line of a multi-line one); "" when the connection closed.
  std::string reply() {
    std::string out;
    for (;;) {
      const auto eol = buffer_.find("\r\n");
      if (eol != std::string::npos) {
        const std::string line = buffer_.substr(0, eol + 2);
        buffer_.erase(0, eol + 2);
        out += line;
        if (line.size() >= 4 && line[3] == ' ') {
          return out;
        }
        continue;
      }
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 10'000) <= 0) {
        ADD_FAILURE() << "no reply within 10 s; so far: " << out << buffer_;
        return out;
      }
      char buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        return out;
      }
      buffer_.append(buf, static_cast<size_t>(n));
    }
  }
  std::string command(const std::string& text) {
    send(text);
    return reply();
  }
  std::string greetAndAuth(const std::string& user, const std::string& secret) {
    EXPECT_TRUE(reply().starts_with("220"));
    EXPECT_TRUE(command("EHLO crm.example").starts_with("250"));
    return command("AUTH PLAIN " +
                   base64(std::string("\0", 1) + user + std::string("\0", 1) + secret));
  }
  // MAIL, RCPT, DATA and the body up to (not including) the final dot.
  void startMessage(const std::string& from) {
    EXPECT_TRUE(command("MAIL FROM:<" + from + ">").starts_with("250"));
    EXPECT_TRUE(command("RCPT TO:<someone@example.net>").starts_with("250"));
    EXPECT_TRUE(command("DATA").starts_with("354"));
    send("From: <" + from + ">\r\nSubject: reload\r\n\r\nhello");
  }
  std::string endMessage() { return command("."); }

private:
  int fd_ = -1;
  std::string buffer_;
};

} // namespace mailgate::relay::test
