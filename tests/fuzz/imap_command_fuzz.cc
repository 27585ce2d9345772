// Fuzzes the IMAP command builder and the value codecs it relies on:
//  - any bytes as arguments either make build() refuse, or a command that a grammar-driven reader
//    (tests/imap/protocol/command_tokenizer.h) splits into exactly the arguments given, byte for
//    byte, with one line end per chunk: an argument can never add a line or another argument;
//  - the redacted form is exactly the command with every string replaced by its length;
//  - SequenceSet::parse/format and modified UTF-7 mailbox names round-trip.
//
// Input layout: byte 0 selects the literal mode; then arguments, each one kind byte, one length
// byte and that many bytes (the last one takes what is left).
#include "imap/protocol/command_builder.h"
#include "imap/protocol/mailbox_name.h"
#include "imap/protocol/sequence_set.h"
#include "tests/imap/protocol/command_tokenizer.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace proto = mailgate::imap::protocol;

namespace {

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

void fuzzSequenceSet(std::string_view text) {
  auto set = proto::SequenceSet::parse(text);
  if (!set) {
    check(set.error().code == "imap.syntax");
    return;
  }
  const std::string formatted = set->format();
  auto again = proto::SequenceSet::parse(formatted);
  check(again.has_value());
  check(again->format() == formatted);
  check(again->size() == set->size());
  check(set->size() > 0);
  auto numbers = set->expand(1000);
  if (numbers) {
    check(numbers->size() == set->size());
    for (std::size_t i = 0; i < numbers->size(); ++i) {
      check(set->contains((*numbers)[i]));
      check(i == 0 || (*numbers)[i - 1] < (*numbers)[i]);
    }
    check(proto::SequenceSet::fromNumbers(*numbers).size() == set->size());
  } else {
    check(set->size() > 1000);
  }
}

void fuzzMailboxName(std::string_view text) {
  if (auto decoded = proto::decodeMailboxName(text)) {
    auto encoded = proto::encodeMailboxName(*decoded);
    check(encoded.has_value());
    auto back = proto::decodeMailboxName(*encoded);
    check(back.has_value() && *back == *decoded);
  }
  if (auto encoded = proto::encodeMailboxName(text)) {
    for (const char c : *encoded) {
      check(c >= 0x20 && c < 0x7f);
    }
    auto decoded = proto::decodeMailboxName(*encoded);
    check(decoded.has_value() && *decoded == text);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) {
    return 0;
  }
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  fuzzSequenceSet(all.substr(1));
  fuzzMailboxName(all.substr(1));

  const auto mode = static_cast<proto::LiteralMode>(data[0] % 3);
  proto::CommandBuilder builder("F1", "UID FETCH", mode);
  std::vector<std::string> expected = {"F1", "UID", "FETCH"};
  std::string redacted = "F1 UID FETCH";
  bool may_fail = false;
  std::size_t pos = 1;
  while (pos + 2 <= size) {
    const uint8_t kind = data[pos] % 7;
    std::size_t len = data[pos + 1];
    pos += 2;
    len = std::min(len, size - pos);
    const std::string arg(all.substr(pos, len));
    pos += len;
    switch (kind) {
    case 0:
      builder.string(arg);
      expected.push_back(arg);
      may_fail = may_fail || arg.find('\0') != std::string::npos;
      break;
    case 1:
      builder.astring(arg);
      expected.push_back(arg);
      may_fail = may_fail || arg.find('\0') != std::string::npos;
      break;
    case 2:
      builder.literal(arg, true);
      expected.push_back(arg);
      break;
    case 3:
      builder.literal(arg, false);
      expected.push_back(arg);
      may_fail = may_fail || arg.find('\0') != std::string::npos;
      break;
    case 4: {
      builder.mailbox(arg);
      auto encoded = proto::encodeMailboxName(arg);
      may_fail = may_fail || !encoded;
      expected.push_back(encoded ? (proto::sameMailbox(arg, "INBOX") ? "INBOX" : *encoded) : "");
      break;
    }
    case 5:
      builder.atom(arg);
      expected.push_back(arg);
      may_fail = true;
      break;
    default:
      builder.number(len);
      expected.push_back(std::to_string(len));
      break;
    }
    // Strings show only their length; what we produce ourselves shows as sent.
    if (kind == 5 || kind == 6) {
      redacted += " " + expected.back();
    } else {
      redacted += " <" + std::to_string(expected.back().size()) + " bytes>";
    }
  }
  auto command = std::move(builder).build();
  if (!command) {
    check(may_fail);
    check(command.error().code == "imap.command");
    return 0;
  }
  const proto::testing_support::Tokenized t = proto::testing_support::tokenize(*command);
  check(t.ok);
  check(t.args == expected);
  for (const auto& chunk : command->chunks) {
    check(chunk.size() >= 2 && chunk.compare(chunk.size() - 2, 2, "\r\n") == 0);
  }
  check(command->redacted == redacted);
  return 0;
}
