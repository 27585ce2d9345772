// Fuzzes the header scanner and the header-field remover (relay/policy/message_headers.h), and
// feeds what they find to SenderDirectory. Checks, beside "no crash, no sanitizer report":
// - scanHeaders fails only with its two documented codes, with texts that echo nothing;
// - its facts stay within the documented bounds;
// - removeHeaderField never grows the message, leaves no field of that name at a line start in
//   the header block, keeps the body byte for byte, only drops whole lines, is idempotent, and
//   changes no other fact scanHeaders reports;
// - refusal texts are one line of printable ASCII;
// - every From address scanHeaders reports holds no control character but tab, and under kAscii
//   is ASCII and stands in the header block as written (any ASCII case): no partial reading.
//
// Input layout: byte 0 picks the field name to remove (bits 0-1) and HeaderBytes (bit 2: kUtf8),
// the rest is the message.
#include "config/config.h"
#include "relay/policy/message_headers.h"
#include "relay/policy/sender_directory.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace policy = mailgate::relay::policy;

namespace {

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

// An independent reading of the line model the header promises (CRLF, bare LF and bare CR end
// a line; the header block ends at the first empty line), written separately from the code
// under test so that a shared mistake is less likely.
struct Split {
  std::vector<std::string_view> header_lines; // content, without line ends
  std::string_view body;                      // from the empty line on (empty if none)
};

Split split(std::string_view text) {
  Split s;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = pos;
    while (end < text.size() && text[end] != '\r' && text[end] != '\n') {
      ++end;
    }
    std::size_t next = end;
    if (next < text.size()) {
      next += (text[next] == '\r' && next + 1 < text.size() && text[next + 1] == '\n') ? 2 : 1;
    }
    if (end == pos && next > end) {
      s.body = text.substr(pos);
      return s;
    }
    s.header_lines.push_back(text.substr(pos, end - pos));
    pos = next;
  }
  return s;
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// True when `line` is "name", then spaces or tabs, then ':'.
bool startsField(std::string_view line, std::string_view name) {
  if (line.size() <= name.size()) {
    return false;
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (lower(line[i]) != lower(name[i])) {
      return false;
    }
  }
  std::size_t i = name.size();
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) {
    ++i;
  }
  return i < line.size() && line[i] == ':';
}

// RFC 5322 field name: one or more printable ASCII characters other than ':'.
bool validName(std::string_view name) {
  if (name.empty()) {
    return false;
  }
  for (const char c : name) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f ||
        c == ':') {
      return false;
    }
  }
  return true;
}

bool printableLine(std::string_view text) {
  for (const char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return false;
    }
  }
  return !text.empty() && text.size() < 500;
}

const mailgate::config::Config& directoryConfig() {
  static const mailgate::config::Config config = [] {
    mailgate::config::Config c;
    mailgate::config::Tenant acme;
    acme.id = "acme";
    mailgate::config::Mailbox rep;
    rep.address = "rep1@acme.example";
    rep.aliases = {"Sales@Acme.Example"};
    acme.mailboxes.push_back(rep);
    c.tenants.push_back(acme);
    return c;
  }();
  return config;
}

// True when `needle` occurs in `haystack`, ASCII case-insensitively.
bool containsIgnoreCase(std::string_view haystack, std::string_view needle) {
  if (needle.size() > haystack.size()) {
    return false;
  }
  for (std::size_t i = 0; i + needle.size() <= haystack.size(); ++i) {
    bool same = true;
    for (std::size_t j = 0; j < needle.size() && same; ++j) {
      same = lower(haystack[i + j]) == lower(needle[j]);
    }
    if (same) {
      return true;
    }
  }
  return false;
}

void checkFacts(std::string_view message, const policy::HeaderFacts& facts,
                policy::HeaderBytes bytes) {
  check(facts.from.size() <= policy::kMaxFromAddresses);
  check(facts.from_present || facts.from.empty());
  check(!facts.from_repeated || facts.from_present);
  const Split lines = split(message.substr(0, policy::kMaxHeaderBytes + 2));
  std::string header;
  for (const auto line : lines.header_lines) {
    header.append(line); // unfolded (a quoted local part may hold a fold)
  }
  for (const auto& address : facts.from) {
    check(!address.empty());
    for (const char c : address) {
      const auto u = static_cast<unsigned char>(c);
      check((u >= 0x20 || c == '\t') && u != 0x7f); // a tab may stand in a quoted local part
      check(bytes == policy::HeaderBytes::kUtf8 || u < 0x80);
    }
    if (bytes == policy::HeaderBytes::kAscii) {
      check(containsIgnoreCase(header, address));
    }
  }
  if (facts.priority) {
    const std::string& p = *facts.priority;
    check(p.size() <= message.size());
    check(p.empty() ||
          (p.front() != ' ' && p.front() != '\t' && p.back() != ' ' && p.back() != '\t'));
  }
}

void checkDirectory(const policy::HeaderFacts& facts, std::string_view raw) {
  static const policy::SenderDirectory directory(directoryConfig());
  const std::vector<std::string> scope{"acme"};
  auto resolved = directory.resolve(raw.substr(0, 300), scope);
  if (!resolved) {
    check(printableLine(resolved.error().text));
    resolved = directory.resolve("rep1@acme.example", scope);
    check(resolved.has_value());
  }
  const auto from = directory.checkFrom(*resolved, facts.from);
  if (!from) {
    check(printableLine(from.error().text));
  } else {
    for (const auto& address : facts.from) {
      const policy::MailboxRef* ref = directory.find(address);
      check(ref != nullptr && ref->mailbox == resolved->mailbox);
    }
  }
}

void checkRemoval(std::string_view message, std::string_view name, policy::HeaderBytes bytes,
                  const mailgate::Result<policy::HeaderFacts>& before) {
  const std::string out = policy::removeHeaderField(message, name);
  check(out.size() <= message.size());

  const Split in_lines = split(message);
  const Split out_lines = split(out);
  check(out_lines.body == in_lines.body);
  if (!validName(name)) {
    check(out == message);
    return;
  }
  for (const auto line : out_lines.header_lines) {
    check(!startsField(line, name));
  }
  // Only whole lines are dropped: the output's lines are the input's, in order, and all of them
  // when nothing matched. (Line ends are compared apart: a bare CR may become CRLF.)
  std::size_t j = 0;
  for (const auto line : out_lines.header_lines) {
    while (j < in_lines.header_lines.size() && in_lines.header_lines[j] != line) {
      ++j;
    }
    check(j < in_lines.header_lines.size());
    ++j;
  }
  if (out_lines.header_lines.size() == in_lines.header_lines.size()) {
    check(out == message);
  }
  check(policy::removeHeaderField(out, name) == out);

  if (!before) {
    return;
  }
  // A smaller header block of the same lines scans at least as well.
  const auto after = policy::scanHeaders(out, bytes);
  check(after.has_value());
  if (name == "X-Mailgate-Priority") {
    check(!after->priority);
    check(after->from == before->from);
    check(after->from_present == before->from_present);
    check(after->from_repeated == before->from_repeated);
  } else if (name == "From") {
    check(!after->from_present && after->from.empty());
    check(after->priority == before->priority);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) {
    return 0;
  }
  const std::string_view message(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string_view name;
  switch (data[0] % 4) {
  case 0:
    name = "X-Mailgate-Priority";
    break;
  case 1:
    name = "From";
    break;
  case 2:
    name = "subject";
    break;
  default: {
    // The name of the message's first line, whatever it is (sometimes not a valid name).
    const std::string_view first = split(message).header_lines.empty()
                                       ? std::string_view()
                                       : split(message).header_lines.front();
    name = first.substr(0, first.find(':'));
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) {
      name.remove_suffix(1);
    }
    break;
  }
  }

  const auto bytes = (data[0] & 4) != 0 ? policy::HeaderBytes::kUtf8 : policy::HeaderBytes::kAscii;
  const auto facts = policy::scanHeaders(message, bytes);
  if (facts) {
    checkFacts(message, *facts, bytes);
    checkDirectory(*facts, message);
  } else {
    const auto& e = facts.error();
    check(e.code == "header.too_large" || e.code == "header.bad_from");
    check(e.code != "header.too_large" || message.size() > policy::kMaxHeaderBytes);
    check(printableLine(e.message));
  }
  checkRemoval(message, name, bytes, facts);
  return 0;
}
