// Fuzzes the delivery side: the reply parser and EHLO reader, and a ClientSession fed arbitrary
// server bytes in arbitrary pieces while it tries to deliver messages. Checks invariants: no
// secret in any error, results that match the envelope, bounded output pulls.
//
// Input layout: byte 0 selects options, byte 1 seeds the chunk sizes, the rest is server bytes.
#include "relay/smtp/protocol/client_session.h"
#include "relay/smtp/protocol/ehlo.h"
#include "relay/smtp/protocol/reply.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <variant>

namespace smtp = mailgate::relay::smtp;

namespace {

constexpr std::string_view kPassword = "Fuzz-Secret-Pa55";

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

void checkNoSecret(const mailgate::Error& e) {
  check(e.describe().find(kPassword) == std::string::npos);
}

void fuzzParser(std::uint8_t seed, std::string_view in) {
  smtp::ReplyParser parser(smtp::ReplyParser::Limits{200, 8});
  std::size_t pos = 0;
  std::size_t step = 1 + seed % 13;
  bool failed = false;
  while (pos < in.size() && !failed) {
    parser.feed(in.substr(pos, step));
    pos += step;
    while (true) {
      auto r = parser.next();
      if (!r) {
        failed = true;
        break;
      }
      if (!*r) {
        break;
      }
      const smtp::Reply& reply = **r;
      check(reply.code >= 200 && reply.code <= 559);
      check(!reply.lines.empty() && reply.lines.size() <= 8);
      for (const auto& line : reply.lines) {
        check(line.size() <= 200);
      }
      check(reply.enhanced.empty() ||
            reply.enhanced[0] == static_cast<char>('0' + reply.code / 100));
      const smtp::EhloCapabilities caps = smtp::parseEhloCapabilities(reply);
      check(caps.auth || caps.auth_mechanisms.empty());
    }
  }
}

void fuzzClient(std::uint8_t flags, std::uint8_t seed, std::string_view in) {
  smtp::ClientOptions o;
  o.ehlo_name = "gw.fuzz";
  o.tls = static_cast<smtp::ClientTls>(flags % 3);
  o.auth = static_cast<smtp::ClientAuth>((flags >> 2) % 4);
  o.username = "user@fuzz.test";
  o.password = std::string(kPassword);
  o.require_auth = (flags & 16) != 0;
  o.reply_limits = smtp::ReplyParser::Limits{300, 16};
  smtp::ClientSession c(o);

  const smtp::Envelope envelope{"from@fuzz.test",
                                {"a@fuzz.test", "b@fuzz.test", "postmaster"},
                                (flags & 32) != 0,
                                (flags & 64) != 0};
  const std::string body = "Subject: fuzz\r\n\r\n.line\nanother\r.\r\n";
  int sends = 0;
  bool closed = false;
  const std::size_t pull = 1 + seed * 17u;
  auto pump = [&] {
    while (c.hasOutput()) {
      check(c.takeOutput(pull).size() <= pull);
    }
    while (auto e = c.nextEvent()) {
      check(!closed);
      if (std::holds_alternative<smtp::ClientSession::StartTls>(*e)) {
        c.tlsStarted();
      } else if (std::holds_alternative<smtp::ClientSession::Ready>(*e)) {
        // Events are queued in order: a later one (Closed) may already have happened, in which
        // case send() refuses with smtp.not_ready.
        if (sends < 3) {
          ++sends;
          auto sent = c.send(envelope, body);
          if (!sent) {
            checkNoSecret(sent.error());
          }
        } else {
          c.quit();
        }
      } else if (auto* r = std::get_if<smtp::ClientSession::MessageResult>(&*e)) {
        check(r->recipients.size() == envelope.recipients.size());
        std::size_t delivered = 0;
        for (std::size_t i = 0; i < r->recipients.size(); ++i) {
          check(r->recipients[i].address == envelope.recipients[i]);
          delivered += r->recipients[i].status == smtp::RecipientStatus::kDelivered ? 1 : 0;
        }
        check((r->outcome == smtp::MessageOutcome::kDelivered) ==
              (delivered == r->recipients.size()));
        check((r->outcome == smtp::MessageOutcome::kPartial) ==
              (delivered > 0 && delivered < r->recipients.size()));
        if (r->error) {
          checkNoSecret(*r->error);
        }
      } else if (auto* closed_event = std::get_if<smtp::ClientSession::Closed>(&*e)) {
        closed = true;
        check(c.closed());
        if (closed_event->error) {
          checkNoSecret(*closed_event->error);
        }
      }
      while (c.hasOutput()) {
        check(c.takeOutput(pull).size() <= pull);
      }
    }
  };
  std::uint32_t state = seed * 2246822519u + 7;
  std::size_t pos = 0;
  while (pos < in.size() && !closed) {
    state = state * 1664525u + 1013904223u;
    const std::size_t len = 1 + (state >> 20) % ((seed & 2) != 0 ? 5 : 200);
    const std::string_view piece = in.substr(pos, len);
    c.receive(std::span<const char>(piece.data(), piece.size()));
    pos += piece.size();
    pump();
  }
  c.connectionLost(mailgate::Error("fuzz.eof", "end of input"));
  pump();
  check(c.closed());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) {
    return 0;
  }
  const std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  fuzzParser(data[1], in);
  fuzzClient(data[0], data[1], in);
  return 0;
}
