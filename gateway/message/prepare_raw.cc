// prepareRaw: the client's own RFC 5322 message, with CRLF line ends, without Bcc and
// X-Mailgate-Priority, with Date and Message-ID.
#include "gateway/message/address.h"
#include "gateway/message/fields.h"
#include "gateway/message/submission.h"
#include "relay/policy/message_headers.h"
#include "relay/route/ledger.h"

#include <algorithm>
#include <fmt/format.h>
#include <optional>
#include <utility>
#include <vector>

namespace mailgate::message {

namespace {

using namespace detail;

std::unexpected<Error> invalid(std::string_view field, std::string_view what, std::string hint) {
  return failWith(kInvalid, field, what, std::move(hint));
}

// The original message cut at its header block. Line ends there are CRLF or a bare LF (a bare CR
// was refused); `fields` holds the field lines with their line ends, `separator` the empty line
// (empty when the message has none: then it is all header), `body` the rest.
struct RawParts {
  std::string_view fields;
  std::string_view separator;
  std::string_view body;
};

Result<RawParts> splitHeader(std::string_view raw) {
  std::size_t pos = 0;
  std::size_t line_number = 0;
  // Nothing past kMaxHeaderBytes is looked at, as in relay::policy::scanHeaders.
  while (pos < raw.size() && pos <= relay::policy::kMaxHeaderBytes) {
    ++line_number;
    const std::size_t eol = raw.find_first_of("\r\n", pos);
    if (eol == std::string_view::npos) {
      break; // the last line, without a line end: still header
    }
    std::size_t next = eol + 1;
    if (raw[eol] == '\r') {
      if (next >= raw.size() || raw[next] != '\n') {
        return failWith(kHeaderInjection, "header",
                        fmt::format("line {} of the header block ends in a bare CR", line_number),
                        "end every header line with CRLF (or LF); a CR alone can smuggle a "
                        "header field past a filter");
      }
      ++next;
    }
    if (eol == pos) {
      return RawParts{raw.substr(0, pos), raw.substr(pos, next - pos), raw.substr(next)};
    }
    pos = next;
  }
  if (raw.size() > relay::policy::kMaxHeaderBytes) {
    return failWith(kTooLarge, "header", "the header block is larger than 256 KiB",
                    "keep the header block (up to the first empty line) under 256 KiB");
  }
  return RawParts{raw, {}, {}};
}

// Appends `text` to `out` with every line end (CRLF, bare LF, bare CR) as CRLF.
void appendCrlf(std::string& out, std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t eol = text.find_first_of("\r\n", pos);
    if (eol == std::string_view::npos) {
      out.append(text.substr(pos));
      return;
    }
    out.append(text.substr(pos, eol - pos));
    out += "\r\n";
    pos = eol + (text[eol] == '\r' && eol + 1 < text.size() && text[eol + 1] == '\n' ? 2 : 1);
  }
}

bool endsWithLineEnd(std::string_view text) {
  return !text.empty() && (text.back() == '\n' || text.back() == '\r');
}

// What prepareRaw needs from the header block beyond HeaderFacts. Field names as in
// relay/policy: a name, optional spaces or tabs, ':'; compared ASCII case-insensitively.
struct RawFields {
  std::vector<std::string> from;                                // unfolded values
  std::vector<std::pair<std::string, std::string>> to, cc, bcc; // name as written, unfolded value
  std::vector<std::string> message_ids;                         // unfolded values
  bool has_date = false;
  bool has_priority = false;
  std::optional<std::string> foreign_mailgate; // an X-Mailgate-* other than X-Mailgate-Priority
};

// `fields` has CRLF line ends only. Every line must be a field or a continuation line of one:
// a line that is neither (an mbox "From " line, a name with a space or a non-ASCII byte) is
// ignored by relay/policy, so what a reader makes of it would be nobody's decision.
Result<RawFields> readFields(std::string_view fields) {
  RawFields out;
  std::string* value = nullptr; // the value being unfolded, when it is one we keep
  std::size_t pos = 0;
  std::size_t line_number = 0;
  while (pos < fields.size()) {
    std::size_t eol = fields.find("\r\n", pos);
    eol = eol == std::string_view::npos ? fields.size() : eol;
    const std::string_view line = fields.substr(pos, eol - pos);
    pos = eol + 2;
    ++line_number;
    const bool continuation = !line.empty() && isWsp(line.front());
    if (continuation && line_number > 1) {
      if (value != nullptr) {
        value->append(line); // unfolding removes the line end only (RFC 5322 2.2.3)
      }
      continue;
    }
    value = nullptr;
    const std::size_t colon = continuation ? std::string_view::npos : line.find(':');
    std::string_view name = line.substr(0, colon == std::string_view::npos ? 0 : colon);
    while (!name.empty() && isWsp(name.back())) {
      name.remove_suffix(1);
    }
    if (!isFieldName(name)) {
      return failWith(kInvalid, "header", fmt::format("line {} is not a header field", line_number),
                      "every line before the first empty line must be \"Name: value\" (the "
                      "name printable ASCII) or a continuation starting with a space or tab; an "
                      "mbox \"From \" line is not part of the message");
    }
    const std::string_view rest = line.substr(colon + 1);
    auto keep = [&](std::vector<std::pair<std::string, std::string>>& list) {
      list.emplace_back(std::string(name), std::string(rest));
      value = &list.back().second;
    };
    if (equalsIgnoreCase(name, "From")) {
      out.from.emplace_back(rest);
      value = &out.from.back();
    } else if (equalsIgnoreCase(name, "To")) {
      keep(out.to);
    } else if (equalsIgnoreCase(name, "Cc")) {
      keep(out.cc);
    } else if (equalsIgnoreCase(name, "Bcc")) {
      keep(out.bcc);
    } else if (equalsIgnoreCase(name, "Message-ID")) {
      out.message_ids.emplace_back(rest);
      value = &out.message_ids.back();
    } else if (equalsIgnoreCase(name, "Date")) {
      out.has_date = true;
    } else if (equalsIgnoreCase(name, "X-Mailgate-Priority")) {
      out.has_priority = true;
    } else if (startsWithIgnoreCase(name, "X-Mailgate-") && !out.foreign_mailgate) {
      out.foreign_mailgate = std::string(name);
    }
  }
  return out;
}

// The "<...>" a Message-ID value starts with (a comment may follow), or nullopt.
std::optional<std::string> messageIdOf(std::string_view value) {
  while (!value.empty() && isWsp(value.front())) {
    value.remove_prefix(1);
  }
  const std::size_t close = value.find('>');
  if (close == std::string_view::npos || !isMessageIdToken(value.substr(0, close + 1))) {
    return std::nullopt;
  }
  return std::string(value.substr(0, close + 1));
}

Result<void> addRecipients(const std::vector<std::pair<std::string, std::string>>& fields,
                           std::size_t max, RecipientSet& recipients) {
  for (const auto& [name, value] : fields) {
    auto parsed = parseAddressList(value);
    if (!parsed) {
      return invalid(name, parsed.error(),
                     "write an address list, e.g. \"Jane <jane@example.com>, bob@example.com\"");
    }
    for (const auto& m : parsed->mailboxes) {
      if (auto problem = addrSpecProblem(m.addr)) {
        return invalid(name, fmt::format("{} is not an email address: {}", echo(m.addr), *problem),
                       "write every recipient as an addr-spec such as jane@example.com");
      }
      if (!recipients.add(m.envelope, max)) {
        return failWith(kTooManyRecipients, "To, Cc, Bcc",
                        fmt::format("more than {} recipients after removing duplicates", max),
                        "split the recipients over several messages");
      }
    }
  }
  return {};
}

} // namespace

Result<SubmittedMessage> prepareRaw(std::string_view raw, const ComposeContext& ctx,
                                    std::string_view priority) {
  const ComposeLimits& limits = ctx.limits;
  const std::string size_hint =
      fmt::format("keep the message under {} bytes", limits.max_message_bytes);
  if (raw.size() > limits.max_message_bytes) {
    return failWith(kTooLarge, "message",
                    fmt::format("{} bytes; at most {}", raw.size(), limits.max_message_bytes),
                    size_hint);
  }
  if (raw.find('\0') != std::string_view::npos) {
    return invalid("message", "holds a NUL byte",
                   "send text, with binary content in a base64 MIME part");
  }
  auto parts = splitHeader(raw);
  if (!parts) {
    return std::unexpected(std::move(parts.error()));
  }
  std::string fields;
  fields.reserve(parts->fields.size() + parts->fields.size() / 16 + 2);
  appendCrlf(fields, parts->fields);
  if (!fields.empty() && !fields.ends_with("\r\n")) {
    fields += "\r\n"; // the last line of a message that is all header
  }

  // With CRLF line ends the block may have grown past the bound (as scanHeaders counts it: the
  // empty line must start within kMaxHeaderBytes).
  if (fields.size() > relay::policy::kMaxHeaderBytes) {
    return failWith(kTooLarge, "header", "the header block is larger than 256 KiB",
                    "keep the header block (up to the first empty line) under 256 KiB");
  }
  auto fields_read = readFields(fields);
  if (!fields_read) {
    return std::unexpected(std::move(fields_read.error()));
  }
  const RawFields& read = *fields_read;
  const std::string one_sender = "the sender must be one mailbox: write one From field with one "
                                 "address, e.g. \"From: Rep <rep@example.com>\"";
  // Read strictly here first (what GMime would read short, or leak memory on, is refused), then
  // as the SMTP path reads it, below; the two must agree.
  std::vector<ParsedList> from_lists;
  for (const auto& value : read.from) {
    auto parsed = parseAddressList(value);
    if (!parsed) {
      return invalid("From", parsed.error(), one_sender);
    }
    from_lists.push_back(std::move(*parsed));
  }

  // The facts the SMTP path reads, from the same text (the empty line added: scanHeaders must see
  // where the block ends).
  // UTF-8 as in parseAddressList: the message goes out with SMTPUTF8 or 8BITMIME when it has it.
  auto facts = relay::policy::scanHeaders(fields + "\r\n", relay::policy::HeaderBytes::kUtf8);
  if (!facts) {
    return invalid("From", facts.error().message, one_sender);
  }
  if (!facts->from_present) {
    return invalid("From", "the message has no From field", one_sender);
  }
  if (facts->from_repeated) {
    return invalid("From", "the message has more than one From field", one_sender);
  }
  if (facts->from.size() != 1) {
    return invalid("From", fmt::format("names {} mailboxes", facts->from.size()), one_sender);
  }
  if (auto problem = addrSpecProblem(facts->from.front())) {
    return invalid(
        "From", fmt::format("{} is not an email address: {}", echo(facts->from.front()), *problem),
        one_sender);
  }
  if (from_lists.size() != 1 || from_lists.front().mailboxes.size() != 1 ||
      from_lists.front().mailboxes.front().envelope != facts->from.front()) {
    return invalid("From", "holds text that is not one mailbox", one_sender);
  }

  SubmittedMessage out;
  if (!priority.empty()) {
    const auto p = relay::route::parsePriority(priority);
    if (!p) {
      return invalid("priority", fmt::format("{} is not a priority", echo(priority)),
                     "use ?priority=bulk (the default) or ?priority=personal");
    }
    out.priority = std::string(relay::route::toString(*p));
  } else if (facts->priority) {
    const auto p = relay::route::parsePriority(*facts->priority);
    if (!p) {
      return invalid("X-Mailgate-Priority",
                     fmt::format("{} is not a priority", echo(*facts->priority)),
                     "X-Mailgate-Priority must be 'personal' or 'bulk' (default bulk)");
    }
    out.priority = std::string(relay::route::toString(*p));
  }

  if (read.foreign_mailgate) {
    return invalid(echo(*read.foreign_mailgate), "X-Mailgate-* fields are the gateway's own",
                   "remove it; the only one a client may send is X-Mailgate-Priority");
  }
  RecipientSet recipients;
  for (const auto* list : {&read.to, &read.cc, &read.bcc}) {
    if (auto added = addRecipients(*list, limits.max_recipients, recipients); !added) {
      return std::unexpected(std::move(added.error()));
    }
  }
  if (recipients.size() == 0) {
    return invalid("To", "the message has no recipients (no address in To, Cc or Bcc)",
                   "name the recipients in To, Cc or Bcc");
  }
  std::string added;
  if (read.message_ids.size() > 1) {
    return invalid("Message-ID",
                   fmt::format("the message has {} Message-ID fields", read.message_ids.size()),
                   "write one Message-ID, or none and the gateway adds one");
  }
  if (read.message_ids.empty()) {
    auto id = generateMessageId(ctx.message_id_domain);
    if (!id) {
      return std::unexpected(std::move(id.error()));
    }
    out.message_id = std::move(*id);
  } else {
    auto id = messageIdOf(read.message_ids.front());
    if (!id) {
      return invalid("Message-ID",
                     fmt::format("{} is not a message id", echo(read.message_ids.front())),
                     "write it as <unique@domain>, or leave it out and the gateway adds one");
    }
    out.message_id = std::move(*id);
  }
  if (!read.has_date) {
    added += "Date: " + formatDate(ctx.now_ms) + "\r\n";
  }
  if (read.message_ids.empty()) {
    added += "Message-ID: " + out.message_id + "\r\n";
  }
  if (!read.bcc.empty()) {
    fields = relay::policy::removeHeaderField(fields, "Bcc");
  }
  if (read.has_priority) {
    fields = relay::policy::removeHeaderField(fields, "X-Mailgate-Priority");
  }

  out.data.reserve(added.size() + fields.size() + 2 + parts->body.size() + parts->body.size() / 16 +
                   2);
  out.data += added;
  out.data += fields;
  if (!parts->separator.empty()) {
    out.data += "\r\n";
    appendCrlf(out.data, parts->body);
    if (!parts->body.empty() && !endsWithLineEnd(parts->body)) {
      out.data += "\r\n";
    }
  }
  if (out.data.size() > limits.max_message_bytes) {
    return failWith(kTooLarge, "message",
                    fmt::format("{} bytes with CRLF line ends and the added fields; at most {}",
                                out.data.size(), limits.max_message_bytes),
                    size_hint);
  }
  out.from = facts->from.front();
  out.recipients = recipients.take();
  out.smtputf8 =
      !isAscii(out.from) || std::any_of(out.recipients.begin(), out.recipients.end(),
                                        [](const std::string& r) { return !isAscii(r); });
  out.body_8bit = !isAscii(out.data);
  return out;
}

} // namespace mailgate::message
