// Fuzzes the submission server: ServerSession fed arbitrary bytes in arbitrary pieces, with the
// driver's requests answered by fixed verdicts; plus the command parser, base64 and the DATA
// codecs on the same bytes. Checks invariants, not just the absence of crashes.
//
// Input layout: byte 0 selects options, byte 1 seeds the chunk sizes, the rest is client bytes.
#include "base/base64.h"
#include "relay/smtp/protocol/command.h"
#include "relay/smtp/protocol/data_decoder.h"
#include "relay/smtp/protocol/dot_stuffer.h"
#include "relay/smtp/protocol/server_session.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <variant>

namespace smtp = mailgate::relay::smtp;

namespace {

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

// Every output is a sequence of reply lines: three digits, ' ' or '-', printable text, CRLF.
void checkReplies(std::string_view out) {
  std::size_t pos = 0;
  while (pos < out.size()) {
    const std::size_t end = out.find("\r\n", pos);
    check(end != std::string_view::npos);
    const std::string_view line = out.substr(pos, end - pos);
    check(line.size() >= 4);
    check(line[0] >= '2' && line[0] <= '5' && line[1] >= '0' && line[1] <= '9' && line[2] >= '0' &&
          line[2] <= '9');
    check(line[3] == ' ' || line[3] == '-');
    for (const char c : line) {
      const auto u = static_cast<unsigned char>(c);
      check(u >= 0x20 && u != 0x7f);
    }
    pos = end + 2;
  }
}

bool onlyCrLf(std::string_view data) {
  for (std::size_t i = 0; i < data.size(); ++i) {
    if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r')) {
      return false;
    }
    if (data[i] == '\r' && (i + 1 == data.size() || data[i + 1] != '\n')) {
      return false;
    }
  }
  return true;
}

void fuzzSession(std::uint8_t flags, std::uint8_t seed, std::string_view in) {
  smtp::ServerOptions o;
  o.hostname = "fuzz.test";
  o.max_line_length = 512;
  o.max_message_bytes = 2048;
  o.max_recipients = 4;
  o.max_held_bytes = 1024;
  o.tls_available = (flags & 1) != 0;
  o.require_tls = (flags & 2) != 0;
  o.tls_active = (flags & 4) != 0;
  if ((flags & 8) != 0) {
    o.trusted_identity = "trusted";
  }
  if ((flags & 16) != 0) {
    o.auth_mechanisms = {smtp::SaslMechanism::kLogin};
  }
  const bool auth_store_down = (flags & 32) != 0;
  const bool reject_messages = (flags & 64) != 0;

  smtp::ServerSession s(o);
  s.greet();
  bool closed = false;
  auto pump = [&] {
    checkReplies(s.takeOutput());
    while (auto r = s.nextRequest()) {
      check(!closed);
      if (std::holds_alternative<smtp::ServerSession::StartTls>(*r)) {
        s.tlsStarted();
        check(s.tlsActive());
      } else if (auto* a = std::get_if<smtp::ServerSession::Authenticate>(&*r)) {
        if (auth_store_down) {
          s.authUnavailable();
        } else {
          s.authResult(a->username == "alice" && a->password == "secret", a->username);
        }
      } else if (auto* m = std::get_if<smtp::ServerSession::Message>(&*r)) {
        check(m->data.size() <= o.max_message_bytes);
        check(onlyCrLf(m->data));
        check(m->data.find('\0') == std::string::npos);
        check(!m->recipients.empty() && m->recipients.size() <= o.max_recipients);
        check(!m->identity.empty());
        check(!o.require_tls || m->tls);
        if (reject_messages) {
          s.messageResult(452, "4.3.1", "Insufficient system storage");
        } else {
          s.messageResult(250, "2.0.0", "Ok: queued");
        }
      } else {
        closed = true;
        check(s.closed());
      }
      checkReplies(s.takeOutput());
    }
    check(s.bufferedBytes() <= o.max_line_length + 1 + o.max_held_bytes);
  };
  pump();
  std::uint32_t state = seed * 2654435761u + 1;
  std::size_t pos = 0;
  while (pos < in.size() && !closed) {
    state = state * 1103515245u + 12345u;
    const std::size_t len = 1 + (state >> 16) % ((seed & 1) != 0 ? 7 : 300);
    const std::string_view piece = in.substr(pos, len);
    s.receive(std::span<const char>(piece.data(), piece.size()));
    pos += piece.size();
    pump();
  }
  s.timeout();
  pump();
  check(s.closed());
}

void fuzzParsers(std::string_view in) {
  std::size_t pos = 0;
  while (pos <= in.size()) {
    const std::size_t nl = in.find('\n', pos);
    const std::string_view line =
        in.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    auto cmd = smtp::parseCommand(line);
    if (!cmd) {
      // Reply texts never carry client bytes that could break a reply line.
      for (const char c : cmd.error().message) {
        check(c != '\r' && c != '\n' && c != '\0');
      }
    } else if (cmd->verb == smtp::Verb::kMail || cmd->verb == smtp::Verb::kRcpt) {
      const std::string& a = cmd->path.address;
      check(a.find_first_of("\r\n<>") == std::string::npos || a.front() == '"');
      check(a.empty() || cmd->path.is_postmaster || smtp::isValidMailbox(a, cmd->path.non_ascii));
    }
    if (nl == std::string_view::npos) {
      break;
    }
    pos = nl + 1;
  }

  if (auto decoded = mailgate::base64Decode(in)) {
    check(mailgate::base64Encode(*decoded) == in);
  }
  check(mailgate::base64Decode(mailgate::base64Encode(in)).value() == in);

  // Whatever the message, its dot-stuffed form decodes back to the CRLF-normalised message and
  // ends exactly at the terminator.
  const std::string wire = smtp::dotStuff(in);
  smtp::DataDecoder decoder(1 << 20);
  check(decoder.feed(wire) == wire.size());
  check(decoder.done());
  std::string expected;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\r' || in[i] == '\n') {
      expected += "\r\n";
      if (in[i] == '\r' && i + 1 < in.size() && in[i + 1] == '\n') {
        ++i;
      }
    } else {
      expected += in[i];
    }
  }
  if (!expected.empty() && !expected.ends_with("\r\n")) {
    expected += "\r\n";
  }
  std::erase(expected, '\0'); // the decoder flags NUL and does not store it
  check(decoder.data() == expected);

  // The raw bytes as a DATA stream: never stores more than the limit, never a bare line end.
  smtp::DataDecoder raw(256);
  const std::size_t used = raw.feed(in);
  check(used <= in.size());
  check(raw.data().size() <= 256);
  check(onlyCrLf(raw.data()));
  if (!raw.done()) {
    check(used == in.size());
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) {
    return 0;
  }
  const std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  fuzzSession(data[0], data[1], in);
  fuzzParsers(in);
  return 0;
}
