#include "relay/policy/message_headers.h"

#include <algorithm>
#include <gmime/gmime.h>
#include <mutex>
#include <utility>

namespace mailgate::relay::policy {

namespace {

constexpr std::string_view kFrom = "From";
constexpr std::string_view kPriority = "X-Mailgate-Priority";

// One line: [begin, end) is its content, `next` is where the following line starts (after the
// line end; equal to `end` only at the end of the text).
struct Line {
  std::size_t begin = 0;
  std::size_t end = 0;
  std::size_t next = 0;
};

// Line ends are CRLF, a bare LF and a bare CR, as in DataDecoder and DotStuffer.
Line lineAt(std::string_view text, std::size_t pos) {
  const std::size_t i = text.find_first_of("\r\n", pos);
  if (i == std::string_view::npos) {
    return {pos, text.size(), text.size()};
  }
  if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
    return {pos, i, i + 2};
  }
  return {pos, i, i + 1};
}

bool isWsp(char c) {
  return c == ' ' || c == '\t';
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           const auto lx = x >= 'A' && x <= 'Z' ? x - 'A' + 'a' : x;
           const auto ly = y >= 'A' && y <= 'Z' ? y - 'A' + 'a' : y;
           return lx == ly;
         });
}

// RFC 5322 ftext: printable US-ASCII except ':'.
bool isFieldName(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(),
                                      [](char c) { return c > 0x20 && c < 0x7f && c != ':'; });
}

struct FieldStart {
  std::string_view name;
  std::string_view value; // the rest of the first line, after the colon
};

// The field a line starts, or nullopt when the line does not start one (continuation line, no
// colon, or something that is not a field name before it).
std::optional<FieldStart> fieldStart(std::string_view line) {
  if (line.empty() || isWsp(line.front())) {
    return std::nullopt;
  }
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view name = line.substr(0, colon);
  while (!name.empty() && isWsp(name.back())) {
    name.remove_suffix(1);
  }
  if (!isFieldName(name)) {
    return std::nullopt;
  }
  return FieldStart{name, line.substr(colon + 1)};
}

std::string_view trimWsp(std::string_view text) {
  while (!text.empty() && isWsp(text.front())) {
    text.remove_prefix(1);
  }
  while (!text.empty() && isWsp(text.back())) {
    text.remove_suffix(1);
  }
  return text;
}

// --- From --------------------------------------------------------------------------------------

Error badFrom(std::string message) {
  return Error("header.bad_from", std::move(message),
               "write From as an address list, e.g. \"Name <rep@example.com>\"");
}

// Appends the envelope form of every mailbox in one From field's unfolded value to `out`.
Result<void> parseFrom(std::string_view value, HeaderBytes bytes, std::vector<std::string>& out) {
  if (value.size() > kMaxFromBytes) {
    return std::unexpected(badFrom("the From field is too long"));
  }
  // The strict reader (address_list.h): a field GMime would read short, skip part of, or leak
  // memory on is refused before GMime sees it, and what GMime returns must be what was written.
  auto parsed = parseAddressList(
      value, {.bytes = bytes, .max_colons = kMaxFromAddresses, .max_mailboxes = kMaxFromAddresses});
  if (!parsed) {
    return std::unexpected(badFrom("the From field " + parsed.error()));
  }
  if (parsed->mailboxes.empty()) {
    return std::unexpected(badFrom("the From field names no mailbox"));
  }
  for (auto& mailbox : parsed->mailboxes) {
    if (mailbox.envelope.empty()) {
      return std::unexpected(badFrom("the From field holds an empty address"));
    }
    out.push_back(std::move(mailbox.envelope));
  }
  return {};
}

} // namespace

void initGmime() {
  static std::once_flag once;
  // Never shut down: other code in the process may use GMime too, and its state is small.
  std::call_once(once, [] { g_mime_init(); });
}

Result<HeaderFacts> scanHeaders(std::string_view message, HeaderBytes bytes) {
  // Nothing past this window is read: the empty line must start at or before kMaxHeaderBytes, and
  // a line the window cuts short is followed by nothing that could start in time.
  const std::string_view window = message.substr(0, kMaxHeaderBytes + 2);
  enum class Field { kNone, kFrom, kPriority, kOther };
  Field current = Field::kNone;
  std::string value;
  std::vector<std::string> from_values;
  std::optional<std::string> priority;
  auto finishField = [&] {
    if (current == Field::kFrom) {
      from_values.push_back(std::move(value));
    } else if (current == Field::kPriority && !priority) {
      priority = std::string(trimWsp(value));
    }
    value.clear();
    current = Field::kNone;
  };

  std::size_t pos = 0;
  bool ended = false; // the empty line was seen, starting at or before kMaxHeaderBytes
  while (pos < window.size() && pos <= kMaxHeaderBytes) {
    const Line l = lineAt(window, pos);
    const std::string_view line = window.substr(l.begin, l.end - l.begin);
    pos = l.next;
    if (line.empty()) {
      ended = true;
      break;
    }
    if (isWsp(line.front())) {
      // Unfolding removes only the line end; the leading white space stays (RFC 5322 2.2.3).
      if (current == Field::kFrom || current == Field::kPriority) {
        value.append(line);
      }
      continue;
    }
    finishField();
    const auto field = fieldStart(line);
    if (!field) {
      continue;
    }
    if (equalsIgnoreCase(field->name, kFrom)) {
      current = Field::kFrom;
      value.assign(field->value);
    } else if (equalsIgnoreCase(field->name, kPriority)) {
      current = Field::kPriority;
      value.assign(field->value);
    } else {
      current = Field::kOther;
    }
  }
  // Without an empty line the whole message is the header block.
  if (!ended && message.size() > kMaxHeaderBytes) {
    return fail("header.too_large", "the message header is larger than 256 KiB",
                "keep the header block (up to the first empty line) under 256 KiB");
  }
  finishField();

  HeaderFacts facts;
  facts.from_present = !from_values.empty();
  facts.from_repeated = from_values.size() > 1;
  facts.priority = std::move(priority);
  for (const auto& from : from_values) {
    if (auto parsed = parseFrom(from, bytes, facts.from); !parsed) {
      return std::unexpected(std::move(parsed.error()));
    }
  }
  if (facts.from.size() > kMaxFromAddresses) {
    return std::unexpected(badFrom("the From fields hold too many addresses"));
  }
  return facts;
}

std::string removeHeaderField(std::string_view message, std::string_view name) {
  if (!isFieldName(name)) {
    return std::string(message);
  }
  std::string out;
  out.reserve(message.size());
  std::size_t pos = 0;
  bool removing = false;
  while (pos < message.size()) {
    const Line l = lineAt(message, pos);
    if (l.end == l.begin) {
      break; // the empty line: it and the body are copied below
    }
    const std::string_view line = message.substr(l.begin, l.end - l.begin);
    if (!isWsp(line.front())) {
      // A new line decides for itself; a continuation line shares its field's fate.
      const auto field = fieldStart(line);
      removing = field && equalsIgnoreCase(field->name, name);
    }
    if (!removing) {
      out.append(message.substr(l.begin, l.next - l.begin));
    }
    pos = l.next;
  }
  // The kept line before the removed ones ended in a bare CR and the empty line is a bare LF:
  // side by side they would read as one CRLF, and the body would become header. Completing the
  // CR to CRLF keeps both line ends (the DotStuffer sends a bare CR as CRLF anyway).
  if (!out.empty() && out.back() == '\r' && pos < message.size() && message[pos] == '\n') {
    out.push_back('\n');
  }
  out.append(message.substr(pos));
  return out;
}

} // namespace mailgate::relay::policy
