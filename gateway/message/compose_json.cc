// composeFromJson: JSON body -> Draft (every field read and checked) -> GMime tree -> CRLF text.
#include "gateway/message/address.h"
#include "gateway/message/base64.h"
#include "gateway/message/fields.h"
#include "gateway/message/gmime_support.h"
#include "gateway/message/submission.h"
#include "relay/policy/message_headers.h"
#include "relay/route/ledger.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace mailgate::message {

namespace {

using nlohmann::json;
using namespace detail;

constexpr std::array<std::string_view, 12> kTopFields = {
    "from", "to",   "cc",          "bcc",      "reply_to", "subject",
    "text", "html", "attachments", "priority", "headers",  "message_id"};
constexpr std::array<std::string_view, 2> kAddressFields = {"name", "address"};
constexpr std::array<std::string_view, 5> kAttachmentFields = {"name", "content_type", "content",
                                                               "disposition", "content_id"};
constexpr std::string_view kDefaultContentType = "application/octet-stream";
constexpr std::size_t kFoldColumn = 78; // RFC 5322 2.1.1: lines should be at most 78 characters
constexpr std::size_t kMaxLine = 998;   // ... and must be at most 998

// --- errors ------------------------------------------------------------------------------------

std::unexpected<Error> invalid(std::string_view field, std::string_view what, std::string hint) {
  return failWith(kInvalid, field, what, std::move(hint));
}

std::unexpected<Error> wrongType(std::string_view field, std::string_view expected) {
  return failWith(kInvalidJson, field, fmt::format("expected {}", expected),
                  "see the JSON shape of POST /v1/messages in docs/api.md");
}

// Edit distance with adjacent transpositions ("nmae" is one edit from "name"), ASCII
// case-insensitive, for "did you mean". Both strings are short: callers bound them.
std::size_t editDistance(std::string_view a, std::string_view b) {
  const std::size_t width = b.size() + 1;
  std::vector<std::size_t> d((a.size() + 1) * width);
  auto at = [&](std::size_t i, std::size_t j) -> std::size_t& { return d[i * width + j]; };
  for (std::size_t i = 0; i <= a.size(); ++i) {
    at(i, 0) = i;
  }
  for (std::size_t j = 0; j <= b.size(); ++j) {
    at(0, j) = j;
  }
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = lowerAscii(a[i - 1]) == lowerAscii(b[j - 1]) ? 0 : 1;
      at(i, j) = std::min({at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost});
      if (i > 1 && j > 1 && lowerAscii(a[i - 1]) == lowerAscii(b[j - 2]) &&
          lowerAscii(a[i - 2]) == lowerAscii(b[j - 1])) {
        at(i, j) = std::min(at(i, j), at(i - 2, j - 2) + 1);
      }
    }
  }
  return at(a.size(), b.size());
}

// "unknown field" naming the field and, when one is close, the known name it may be a typo of.
template <std::size_t N>
std::unexpected<Error> unknownField(std::string_view prefix, std::string_view name,
                                    const std::array<std::string_view, N>& known) {
  std::string hint;
  if (name.size() <= 32) {
    std::size_t best = 3;
    for (const auto candidate : known) {
      const std::size_t d = editDistance(name, candidate);
      if (d < best && d <= std::max<std::size_t>(1, candidate.size() / 3)) {
        best = d;
        hint = fmt::format("did you mean \"{}\"? ", candidate);
      }
    }
  }
  hint += "the fields here are ";
  for (std::size_t i = 0; i < known.size(); ++i) {
    hint += i == 0 ? "" : ", ";
    hint += known[i];
  }
  const std::string field = prefix.empty() ? echo(name) : fmt::format("{}.{}", prefix, echo(name));
  return invalid(field, "unknown field", std::move(hint));
}

template <std::size_t N>
Result<void> checkKnownFields(const json& object, std::string_view prefix,
                              const std::array<std::string_view, N>& known) {
  for (const auto& [key, value] : object.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return unknownField(prefix, key, known);
    }
  }
  return {};
}

// --- parsing -----------------------------------------------------------------------------------

// The deepest nesting of objects and arrays, counted without parsing (so that a document of a
// million '[' costs nothing but a scan; nlohmann's parser would keep a stack entry per level).
// Strings are skipped with their escapes; the count is exact for valid JSON.
std::size_t nestingDepth(std::string_view text) {
  std::size_t depth = 0;
  std::size_t deepest = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

struct ParsedJson {
  json root;
  std::vector<std::string> header_order; // keys of "headers" in document order
};

Result<ParsedJson> parseJson(std::string_view text) {
  if (nestingDepth(text) > static_cast<std::size_t>(kMaxJsonNesting)) {
    return failWith(kInvalidJson, "body", "nested deeper than the message shape",
                    "send the JSON shape of POST /v1/messages: arrays and objects nest at most "
                    "three deep");
  }
  ParsedJson parsed;
  // Keys seen in each open object, innermost last; the callback sees every key in order.
  std::vector<std::unordered_set<std::string>> open_objects;
  std::optional<std::string> duplicate;
  std::string top_key;
  const json::parser_callback_t callback = [&](int depth, json::parse_event_t event, json& value) {
    switch (event) {
    case json::parse_event_t::object_start:
      open_objects.emplace_back();
      break;
    case json::parse_event_t::object_end:
      if (!open_objects.empty()) {
        open_objects.pop_back();
      }
      break;
    case json::parse_event_t::key: {
      const auto& key = value.get_ref<const std::string&>();
      if (!open_objects.empty() && !open_objects.back().insert(key).second && !duplicate) {
        duplicate = key;
      }
      if (depth == 1) {
        top_key = key;
      } else if (depth == 2 && top_key == "headers") {
        parsed.header_order.push_back(key);
      }
      break;
    }
    default:
      break;
    }
    return true;
  };
  try {
    parsed.root = json::parse(text.begin(), text.end(), callback);
  } catch (const json::parse_error& e) {
    return failWith(kInvalidJson, "body", fmt::format("not JSON (syntax error at byte {})", e.byte),
                    "send a JSON object in UTF-8, or the message itself as message/rfc822");
  } catch (const json::exception&) {
    return failWith(kInvalidJson, "body", "not JSON",
                    "send a JSON object in UTF-8, or the message itself as message/rfc822");
  }
  if (duplicate) {
    return failWith(kInvalidJson, echo(*duplicate), "appears twice in one object",
                    "give every field once");
  }
  if (!parsed.root.is_object()) {
    return failWith(kInvalidJson, "body", "not a JSON object",
                    "send one object such as {\"from\": ..., \"to\": ..., \"text\": ...}");
  }
  return parsed;
}

// --- reading the draft -------------------------------------------------------------------------

struct Attachment {
  std::string path; // "attachments[3]", for errors
  std::string name;
  std::string type; // lower-cased
  std::string subtype;
  std::vector<std::pair<std::string, std::string>> params;
  const std::string* content = nullptr; // base64, inside the parsed JSON
  bool is_inline = false;
  std::string content_id; // without <>
};

struct Draft {
  std::optional<Mailbox> from;
  std::vector<Mailbox> to, cc, bcc, reply_to;
  const std::string* subject = nullptr;
  std::string text, html;
  bool has_text = false, has_html = false;
  std::vector<Attachment> attachments;
  std::vector<std::pair<std::string, std::string>> headers; // name, raw folded value
  std::string message_id;
  std::string priority = "bulk";
};

// The value of an optional field: nullptr when absent or null.
const json* member(const json& object, std::string_view key) {
  const auto it = object.find(key);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

Result<const std::string*> optionalString(const json& object, std::string_view key,
                                          std::string_view path) {
  const json* value = member(object, key);
  if (value == nullptr) {
    return nullptr;
  }
  if (!value->is_string()) {
    return wrongType(path, "a string");
  }
  return &value->get_ref<const std::string&>();
}

Result<Mailbox> checkedMailbox(std::string_view name, std::string_view addr, std::string_view path,
                               std::string hint) {
  auto mailbox = makeMailbox(name, addr);
  if (!mailbox) {
    return invalid(path,
                   fmt::format("{} is not an email address: the domain has an \"xn--\" label "
                               "that is not valid punycode",
                               echo(addr)),
                   std::move(hint));
  }
  return std::move(*mailbox);
}

Result<Mailbox> readAddressString(const std::string& text, const std::string& path) {
  if (auto problem = checkHeaderText(path, text)) {
    return std::unexpected(std::move(*problem));
  }
  const std::string one_hint =
      path == "from" ? "the sender must be one mailbox: \"rep@example.com\" or \"Rep Name "
                       "<rep@example.com>\", or an object {\"name\": ..., \"address\": ...}"
                     : "give one mailbox, \"jane@example.com\" or \"Jane Doe <jane@example.com>\", "
                       "or an object {\"name\": ..., \"address\": ...}; list several recipients "
                       "as an array";
  if (text.size() > kMaxAddressTextBytes) {
    return invalid(path, "longer than 998 octets", one_hint);
  }
  auto parsed = parseAddressList(text);
  if (!parsed) {
    return invalid(path, fmt::format("{} {}", echo(text), parsed.error()), one_hint);
  }
  if (parsed->groups > 0) {
    return invalid(path, "is a group, not a mailbox", one_hint);
  }
  if (parsed->mailboxes.empty()) {
    return invalid(path, fmt::format("{} is not an email address", echo(text)), one_hint);
  }
  if (parsed->mailboxes.size() > 1) {
    return invalid(path, fmt::format("holds {} addresses", parsed->mailboxes.size()), one_hint);
  }
  Mailbox mailbox = std::move(parsed->mailboxes.front());
  if (auto problem = addrSpecProblem(mailbox.addr)) {
    return invalid(path,
                   fmt::format("{} is not an email address: {}", echo(mailbox.addr), *problem),
                   one_hint);
  }
  // GMime decoded any encoded words of the name; what they held must be fit for a header too.
  if (auto problem = checkHeaderText(path, mailbox.name)) {
    return std::unexpected(std::move(*problem));
  }
  return checkedMailbox(mailbox.name, mailbox.addr, path, one_hint);
}

Result<Mailbox> readAddress(const json& value, const std::string& path) {
  if (value.is_string()) {
    return readAddressString(value.get_ref<const std::string&>(), path);
  }
  if (!value.is_object()) {
    return wrongType(path, "an address string or an object {\"name\", \"address\"}");
  }
  if (auto known = checkKnownFields(value, path, kAddressFields); !known) {
    return std::unexpected(std::move(known.error()));
  }
  const std::string name_path = path + ".name";
  const std::string address_path = path + ".address";
  auto name = optionalString(value, "name", name_path);
  if (!name) {
    return std::unexpected(std::move(name.error()));
  }
  auto address = optionalString(value, "address", address_path);
  if (!address) {
    return std::unexpected(std::move(address.error()));
  }
  if (*address == nullptr || (*address)->empty()) {
    return invalid(address_path, "missing", "give the addr-spec, e.g. \"jane@example.com\"");
  }
  const std::string& addr = **address;
  if (auto problem = checkHeaderText(address_path, addr)) {
    return std::unexpected(std::move(*problem));
  }
  if (auto problem = addrSpecProblem(addr)) {
    return invalid(address_path,
                   fmt::format("{} is not an email address: {}", echo(addr), *problem),
                   "give the bare addr-spec, e.g. \"jane@example.com\", and the name apart");
  }
  std::string display;
  if (*name != nullptr) {
    if (auto problem = checkHeaderText(name_path, **name)) {
      return std::unexpected(std::move(*problem));
    }
    if ((*name)->size() > kMaxAddressTextBytes) {
      return invalid(name_path, "longer than 998 octets", "shorten the display name");
    }
    display = **name;
  }
  return checkedMailbox(display, addr, address_path,
                        "give the bare addr-spec, e.g. \"jane@example.com\", and the name apart");
}

// ADDR | [ADDR] into `out`.
Result<void> readAddressList(const json& root, std::string_view field, std::vector<Mailbox>& out) {
  const json* value = member(root, field);
  if (value == nullptr) {
    return {};
  }
  if (value->is_array()) {
    for (std::size_t i = 0; i < value->size(); ++i) {
      auto mailbox = readAddress((*value)[i], fmt::format("{}[{}]", field, i));
      if (!mailbox) {
        return std::unexpected(std::move(mailbox.error()));
      }
      out.push_back(std::move(*mailbox));
    }
    return {};
  }
  auto mailbox = readAddress(*value, std::string(field));
  if (!mailbox) {
    return std::unexpected(std::move(mailbox.error()));
  }
  out.push_back(std::move(*mailbox));
  return {};
}

// Text and html with every line end as CRLF, the canonical form of text (RFC 2046 4.1.1).
std::string canonicalText(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 32);
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\r') {
      out += "\r\n";
      if (i + 1 < text.size() && text[i + 1] == '\n') {
        ++i;
      }
    } else if (c == '\n') {
      out += "\r\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Result<void> readBody(const json& root, std::string_view field, std::string& out, bool& present) {
  auto value = optionalString(root, field, field);
  if (!value) {
    return std::unexpected(std::move(value.error()));
  }
  if (*value == nullptr) {
    return {};
  }
  if ((*value)->find('\0') != std::string::npos) {
    return invalid(field, "holds a NUL character",
                   "send text without NUL; binary content goes in an attachment");
  }
  present = true;
  out = canonicalText(**value);
  return {};
}

// The RFC 2045 token characters.
bool isTokenChar(char c) {
  constexpr std::string_view kTspecials = "()<>@,;:\\\"/[]?=";
  return c > 0x20 && c < 0x7f && kTspecials.find(c) == std::string_view::npos;
}

bool isToken(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), isTokenChar);
}

std::string trimWsp(std::string_view text) {
  while (!text.empty() && isWsp(text.front())) {
    text.remove_prefix(1);
  }
  while (!text.empty() && isWsp(text.back())) {
    text.remove_suffix(1);
  }
  return std::string(text);
}

std::string lowered(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), lowerAscii);
  return out;
}

// "type/subtype" then any "; attribute=value" (value a token or a quoted string), into `a`.
Result<void> readContentType(const std::string& text, const std::string& path, Attachment& a) {
  const std::string hint = "give a MIME type such as \"application/pdf\" or \"text/csv; "
                           "charset=utf-8\"; leave it out for application/octet-stream";
  if (auto problem = checkHeaderText(path, text)) {
    return std::unexpected(std::move(*problem));
  }
  std::size_t pos = 0;
  auto parseToken = [&](std::string_view stops) {
    while (pos < text.size() && isWsp(text[pos])) {
      ++pos;
    }
    const std::size_t start = pos;
    while (pos < text.size() && stops.find(text[pos]) == std::string_view::npos &&
           !isWsp(text[pos])) {
      ++pos;
    }
    std::string token = text.substr(start, pos - start);
    while (pos < text.size() && isWsp(text[pos])) {
      ++pos;
    }
    return token;
  };
  a.type = lowered(parseToken("/"));
  if (pos >= text.size() || text[pos] != '/' || !isToken(a.type)) {
    return invalid(path, fmt::format("{} is not a MIME type", echo(text)), hint);
  }
  ++pos;
  a.subtype = lowered(parseToken(";"));
  if (!isToken(a.subtype)) {
    return invalid(path, fmt::format("{} is not a MIME type", echo(text)), hint);
  }
  if (a.type == "multipart" || a.type == "message") {
    return invalid(path, fmt::format("{}/* is not accepted for an attachment", a.type),
                   "send it as application/octet-stream (or text, html and attachments for the "
                   "parts of a multipart)");
  }
  while (pos < text.size()) {
    if (text[pos] != ';') {
      return invalid(path, fmt::format("{} is not a MIME type", echo(text)), hint);
    }
    ++pos;
    std::string attribute = lowered(parseToken("="));
    if (attribute.empty() && pos >= text.size()) {
      break; // a trailing ';'
    }
    if (!isToken(attribute) || pos >= text.size() || text[pos] != '=') {
      return invalid(path, fmt::format("{} has a malformed parameter", echo(text)), hint);
    }
    ++pos;
    std::string value;
    if (pos < text.size() && text[pos] == '"') {
      ++pos;
      bool closed = false;
      while (pos < text.size()) {
        const char c = text[pos++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\' && pos < text.size()) {
          value.push_back(text[pos++]);
          continue;
        }
        value.push_back(c);
      }
      if (!closed || !isAscii(value)) {
        return invalid(path, fmt::format("{} has a malformed parameter", echo(text)), hint);
      }
      while (pos < text.size() && isWsp(text[pos])) {
        ++pos;
      }
    } else {
      value = parseToken(";");
      if (!isToken(value)) {
        return invalid(path, fmt::format("{} has a malformed parameter", echo(text)), hint);
      }
    }
    if (attribute != "name") { // the file name comes from "name"
      a.params.emplace_back(std::move(attribute), std::move(value));
    }
  }
  return {};
}

// A Content-ID without its angle brackets: dot-atom-text, optionally "@" dot-atom-text.
Result<std::string> readContentId(const std::string& text, const std::string& path) {
  if (auto problem = checkHeaderText(path, text)) {
    return std::unexpected(std::move(*problem));
  }
  std::string_view id = text;
  if (id.size() >= 2 && id.front() == '<' && id.back() == '>') {
    id = id.substr(1, id.size() - 2);
  }
  const std::size_t at = id.find('@');
  const bool ok = id.size() <= kMaxMessageIdBytes &&
                  (at == std::string_view::npos
                       ? isDotAtomText(id)
                       : isDotAtomText(id.substr(0, at)) && isDotAtomText(id.substr(at + 1)));
  if (!ok) {
    return invalid(path, fmt::format("{} is not a content id", echo(text)),
                   "use letters, digits and . - _ (e.g. \"logo\" or \"logo@example.com\"), at "
                   "most 250, and refer to it as cid:logo in the html");
  }
  return std::string(id);
}

Result<void> readAttachments(const json& root, const ComposeLimits& limits, Draft& draft) {
  const json* list = member(root, "attachments");
  if (list == nullptr) {
    return {};
  }
  if (!list->is_array()) {
    return wrongType("attachments", "an array of objects");
  }
  if (list->size() > limits.max_attachments) {
    return failWith(kTooManyAttachments, "attachments",
                    fmt::format("{} attachments; at most {}", list->size(), limits.max_attachments),
                    "send fewer attachments, or a link to the files");
  }
  std::unordered_map<std::string, std::string> content_ids; // lower-cased id -> path
  for (std::size_t i = 0; i < list->size(); ++i) {
    const json& item = (*list)[i];
    Attachment a;
    a.path = fmt::format("attachments[{}]", i);
    if (!item.is_object()) {
      return wrongType(a.path, "an object {\"name\", \"content_type\", \"content\", ...}");
    }
    if (auto known = checkKnownFields(item, a.path, kAttachmentFields); !known) {
      return std::unexpected(std::move(known.error()));
    }
    auto content = optionalString(item, "content", a.path + ".content");
    if (!content) {
      return std::unexpected(std::move(content.error()));
    }
    if (*content == nullptr) {
      return invalid(a.path + ".content", "missing", "give the file's bytes in base64");
    }
    a.content = *content;
    auto name = optionalString(item, "name", a.path + ".name");
    if (!name) {
      return std::unexpected(std::move(name.error()));
    }
    if (*name != nullptr) {
      if (auto problem = checkHeaderText(a.path + ".name", **name)) {
        return std::unexpected(std::move(*problem));
      }
      a.name = trimWsp(**name);
      if (a.name.empty()) {
        return invalid(a.path + ".name", "empty", "give a file name, or leave the field out");
      }
    }
    auto type = optionalString(item, "content_type", a.path + ".content_type");
    if (!type) {
      return std::unexpected(std::move(type.error()));
    }
    if (auto read = readContentType(*type != nullptr ? **type : std::string(kDefaultContentType),
                                    a.path + ".content_type", a);
        !read) {
      return std::unexpected(std::move(read.error()));
    }
    auto disposition = optionalString(item, "disposition", a.path + ".disposition");
    if (!disposition) {
      return std::unexpected(std::move(disposition.error()));
    }
    if (*disposition != nullptr) {
      if (equalsIgnoreCase(**disposition, "inline")) {
        a.is_inline = true;
      } else if (!equalsIgnoreCase(**disposition, "attachment")) {
        return invalid(a.path + ".disposition",
                       fmt::format("{} is not a disposition", echo(**disposition)),
                       "use \"attachment\" (the default) or \"inline\"");
      }
    }
    auto cid = optionalString(item, "content_id", a.path + ".content_id");
    if (!cid) {
      return std::unexpected(std::move(cid.error()));
    }
    if (*cid != nullptr) {
      auto id = readContentId(**cid, a.path + ".content_id");
      if (!id) {
        return std::unexpected(std::move(id.error()));
      }
      const auto [it, inserted] = content_ids.emplace(lowered(*id), a.path);
      if (!inserted) {
        return invalid(a.path + ".content_id",
                       fmt::format("{} is used by {} too", echo(*id), it->second),
                       "give every attachment its own content_id");
      }
      a.content_id = std::move(*id);
    }
    draft.attachments.push_back(std::move(a));
  }
  return {};
}

// --- custom headers ----------------------------------------------------------------------------

// Why `name` may not be set through "headers", or nullopt.
std::optional<std::string> reservedHint(std::string_view name) {
  struct Reserved {
    std::string_view name;
    std::string_view hint;
  };
  static constexpr std::array<Reserved, 12> kExact = {{
      {"From", "set the sender with the field \"from\""},
      {"Sender", "the sender is the field \"from\"; the gateway writes no Sender"},
      {"To", "use the field \"to\""},
      {"Cc", "use the field \"cc\""},
      {"Bcc", "use the field \"bcc\""},
      {"Reply-To", "use the field \"reply_to\""},
      {"Subject", "use the field \"subject\""},
      {"Date", "the gateway writes Date when it accepts the message"},
      {"Message-ID", "use the field \"message_id\""},
      {"MIME-Version", "the gateway writes the MIME structure from text, html and attachments"},
      {"Received", "trace fields are written by the servers on the way"},
      {"Return-Path", "trace fields are written by the servers on the way"},
  }};
  for (const auto& r : kExact) {
    if (equalsIgnoreCase(name, r.name)) {
      return std::string(r.hint);
    }
  }
  if (startsWithIgnoreCase(name, "Content-")) {
    return "the gateway writes the MIME structure from text, html and attachments";
  }
  if (startsWithIgnoreCase(name, "Resent-")) {
    return "Resent-* fields belong to resending a message, not to submitting one";
  }
  if (startsWithIgnoreCase(name, "X-Mailgate-")) {
    return "X-Mailgate-* fields are the gateway's own; set the priority with the field "
           "\"priority\"";
  }
  return std::nullopt;
}

// The raw value GMime writes after "Name:": ASCII text folded before white space so that lines
// stay within 78 octets where possible and never exceed 998, as " ...\n" (GMime turns \n into
// CRLF). nullopt when a word is too long to fit in 998 octets with the name.
std::optional<std::string> foldAscii(std::string_view name, std::string_view value) {
  if (value.empty()) {
    return std::string("\n");
  }
  std::string out = " ";
  std::size_t column = name.size() + 2; // "Name: "
  bool line_has_word = false;           // folding before the first word would gain nothing
  std::size_t pos = 0;
  while (pos < value.size()) {
    // The next word with the white space before it: [pos, end).
    std::size_t word = pos;
    while (word < value.size() && isWsp(value[word])) {
      ++word;
    }
    std::size_t end = word;
    while (end < value.size() && !isWsp(value[end])) {
      ++end;
    }
    const std::string_view piece = value.substr(pos, end - pos);
    if (column + piece.size() > kFoldColumn && line_has_word && word > pos && word < end) {
      // Fold before the last white space character of the run: a line end, then that
      // character starts the continuation line.
      out.append(value.substr(pos, word - pos - 1));
      out += '\n';
      column = 0;
      line_has_word = false;
      pos = word - 1;
      continue;
    }
    column += piece.size();
    if (column > kMaxLine) {
      return std::nullopt;
    }
    out.append(piece);
    line_has_word = line_has_word || word < end;
    pos = end;
  }
  out += '\n';
  return out;
}

Result<void> readHeaders(const ParsedJson& parsed, Draft& draft) {
  const json* headers = member(parsed.root, "headers");
  if (headers == nullptr) {
    return {};
  }
  if (!headers->is_object()) {
    return wrongType("headers", "an object of field names to string values");
  }
  for (const std::string& name : parsed.header_order) {
    const json& value = headers->at(name);
    const std::string path = fmt::format("headers[{}]", echo(name));
    if (auto problem = checkHeaderText(path, name)) {
      return std::unexpected(std::move(*problem));
    }
    if (!isFieldName(name)) {
      return invalid(path, "not a header field name",
                     "a field name is printable ASCII without spaces or ':', e.g. X-Campaign");
    }
    if (auto hint = reservedHint(name)) {
      return invalid(path, "reserved", std::move(*hint));
    }
    if (!value.is_string()) {
      return wrongType(path, "a string");
    }
    const auto& text = value.get_ref<const std::string&>();
    if (auto problem = checkHeaderText(path, text)) {
      return std::unexpected(std::move(*problem));
    }
    std::string trimmed = trimWsp(text);
    if (equalsIgnoreCase(name, "In-Reply-To") || equalsIgnoreCase(name, "References")) {
      std::size_t ids = 0;
      bool ok = true;
      for (std::size_t pos = 0; pos < trimmed.size();) {
        const std::size_t end = std::min(trimmed.find_first_of(" \t", pos), trimmed.size());
        if (end > pos) {
          ok = ok && isMessageIdToken(std::string_view(trimmed).substr(pos, end - pos));
          ++ids;
        }
        pos = end + 1;
      }
      if (!ok || ids == 0) {
        return invalid(path, "must hold message ids",
                       "give the Message-IDs of the earlier messages, e.g. \"<id@example.com>\", "
                       "separated by spaces");
      }
    }
    if (!isAscii(trimmed)) {
      // Unstructured text: RFC 2047 encoded words (GMime), which are ASCII and fold at spaces.
      char* encoded = g_mime_utils_header_encode_text(nullptr, trimmed.c_str(), "utf-8");
      trimmed = encoded != nullptr ? encoded : "";
      g_free(encoded);
    }
    auto raw = foldAscii(name, trimmed);
    if (!raw) {
      return invalid(path, "holds a word too long for one line (998 octets)",
                     "put spaces into the value, or shorten it");
    }
    draft.headers.emplace_back(name, std::move(*raw));
  }
  return {};
}

// --- the draft as a whole ----------------------------------------------------------------------

Result<Draft> readDraft(const ParsedJson& parsed, const ComposeContext& ctx) {
  const json& root = parsed.root;
  if (auto known = checkKnownFields(root, "", kTopFields); !known) {
    return std::unexpected(std::move(known.error()));
  }
  Draft draft;
  const json* from = member(root, "from");
  if (from == nullptr || (from->is_string() && from->get_ref<const std::string&>().empty())) {
    return invalid("from", "missing",
                   "give the sender, one mailbox of the tenant: \"rep@example.com\" or \"Rep "
                   "Name <rep@example.com>\"");
  }
  if (from->is_array()) {
    return invalid("from", "is an array; the sender must be one mailbox",
                   "give one mailbox; other addresses go in reply_to");
  }
  auto sender = readAddress(*from, "from");
  if (!sender) {
    return std::unexpected(std::move(sender.error()));
  }
  draft.from = std::move(*sender);
  const std::array<std::pair<std::string_view, std::vector<Mailbox>*>, 4> lists = {{
      {"to", &draft.to},
      {"cc", &draft.cc},
      {"bcc", &draft.bcc},
      {"reply_to", &draft.reply_to},
  }};
  for (const auto& [field, list] : lists) {
    if (auto read = readAddressList(root, field, *list); !read) {
      return std::unexpected(std::move(read.error()));
    }
  }
  if (draft.to.empty() && draft.cc.empty() && draft.bcc.empty()) {
    return invalid("to", "no recipients (to, cc and bcc are all empty)",
                   "give at least one recipient in to, cc or bcc");
  }
  auto subject = optionalString(root, "subject", "subject");
  if (!subject) {
    return std::unexpected(std::move(subject.error()));
  }
  if (*subject != nullptr) {
    if (auto problem = checkHeaderText("subject", **subject)) {
      return std::unexpected(std::move(*problem));
    }
    draft.subject = *subject;
  }
  auto message_id = optionalString(root, "message_id", "message_id");
  if (!message_id) {
    return std::unexpected(std::move(message_id.error()));
  }
  if (*message_id != nullptr) {
    if (auto problem = checkHeaderText("message_id", **message_id)) {
      return std::unexpected(std::move(*problem));
    }
    std::string id = trimWsp(**message_id);
    if (!id.starts_with('<')) {
      id = "<" + id + ">";
    }
    if (!isMessageId(id)) {
      return invalid("message_id", fmt::format("{} is not a message id", echo(**message_id)),
                     "give a unique id such as \"<order-4711@example.com>\" (at most 250 "
                     "octets), or leave it out and the gateway makes one");
    }
    draft.message_id = std::move(id);
  }
  if (auto read = readHeaders(parsed, draft); !read) {
    return std::unexpected(std::move(read.error()));
  }
  auto priority = optionalString(root, "priority", "priority");
  if (!priority) {
    return std::unexpected(std::move(priority.error()));
  }
  if (*priority != nullptr) {
    const auto p = relay::route::parsePriority(**priority);
    if (!p) {
      return invalid("priority", fmt::format("{} is not a priority", echo(**priority)),
                     "use \"bulk\" (the default) or \"personal\"");
    }
    draft.priority = std::string(relay::route::toString(*p));
  }
  if (auto read = readBody(root, "text", draft.text, draft.has_text); !read) {
    return std::unexpected(std::move(read.error()));
  }
  if (auto read = readBody(root, "html", draft.html, draft.has_html); !read) {
    return std::unexpected(std::move(read.error()));
  }
  if (auto read = readAttachments(root, ctx.limits, draft); !read) {
    return std::unexpected(std::move(read.error()));
  }
  if (!draft.has_text && !draft.has_html && draft.attachments.empty()) {
    return invalid("text", "the message has no body (no text, html or attachments)",
                   "give text, html or at least one attachment");
  }
  return draft;
}

// --- composing with GMime ----------------------------------------------------------------------

void addMailboxes(GMimeMessage* message, GMimeAddressType type,
                  const std::vector<Mailbox>& mailboxes) {
  InternetAddressList* list = g_mime_message_get_addresses(message, type);
  for (const auto& m : mailboxes) {
    const GPtr<InternetAddress> address(
        internet_address_mailbox_new(m.name.empty() ? nullptr : m.name.c_str(), m.addr.c_str()));
    internet_address_set_charset(address.get(), "utf-8");
    internet_address_list_add(list, address.get());
  }
}

GPtr<GMimeStream> memoryStream(std::string_view bytes) {
  GPtr<GMimeStream> stream(g_mime_stream_mem_new());
  g_mime_stream_write(stream.get(), bytes.data(), bytes.size());
  g_mime_stream_reset(stream.get());
  return stream;
}

void setContent(GMimePart* part, std::string_view bytes) {
  const GPtr<GMimeStream> stream = memoryStream(bytes);
  const GPtr<GMimeDataWrapper> wrapper(
      g_mime_data_wrapper_new_with_stream(stream.get(), GMIME_CONTENT_ENCODING_DEFAULT));
  g_mime_part_set_content(part, wrapper.get());
}

// text/<subtype>; charset=utf-8, the encoding GMime finds best for a 7-bit path.
GPtr<GMimeObject> textPart(const char* subtype, const std::string& text) {
  GMimeTextPart* part = g_mime_text_part_new_with_subtype(subtype);
  // Not g_mime_text_part_set_text: it re-encodes the text into the smallest charset that holds
  // it (ISO-8859-1 for "é"), and the label would no longer be utf-8.
  g_mime_text_part_set_charset(part, "utf-8");
  setContent(GMIME_PART(part), text);
  g_mime_object_encode(GMIME_OBJECT(part), GMIME_ENCODING_CONSTRAINT_7BIT);
  // GMime measures lines at their line end, so a long last line without one is missed and the
  // text would go out as 7bit with a line over 998 octets.
  const GMimeContentEncoding chosen = g_mime_part_get_content_encoding(GMIME_PART(part));
  if ((chosen == GMIME_CONTENT_ENCODING_DEFAULT || chosen == GMIME_CONTENT_ENCODING_7BIT) &&
      text.size() - std::min(text.size(), text.rfind('\n') + 1) > kMaxLine) {
    g_mime_part_set_content_encoding(GMIME_PART(part), GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE);
  }
  return GPtr<GMimeObject>(GMIME_OBJECT(part));
}

void setParamsCharset(GMimeParamList* params) {
  for (int i = 0; params != nullptr && i < g_mime_param_list_length(params); ++i) {
    g_mime_param_set_charset(g_mime_param_list_get_parameter_at(params, i), "utf-8");
  }
}

Result<GPtr<GMimeObject>> attachmentPart(const Attachment& a) {
  auto bytes = decodeBase64(*a.content);
  if (!bytes) {
    return invalid(
        a.path + ".content", fmt::format("not base64 at offset {}", bytes.error().offset),
        bytes.error().url_alphabet
            ? "use the standard base64 alphabet (+ and /), not base64url (- and _)"
            : "encode the file's bytes with standard base64 (RFC 4648), e.g. base64 -w0 FILE");
  }
  GPtr<GMimeObject> object(
      GMIME_OBJECT(g_mime_part_new_with_type(a.type.c_str(), a.subtype.c_str())));
  GMimePart* part = GMIME_PART(object.get());
  for (const auto& [attribute, value] : a.params) {
    g_mime_object_set_content_type_parameter(object.get(), attribute.c_str(), value.c_str());
  }
  g_mime_object_set_disposition(object.get(), a.is_inline ? "inline" : "attachment");
  if (!a.name.empty()) {
    g_mime_part_set_filename(part, a.name.c_str());
    // RFC 2231 in utf-8, rather than the smallest charset GMime would pick.
    setParamsCharset(
        g_mime_content_type_get_parameters(g_mime_object_get_content_type(object.get())));
    setParamsCharset(g_mime_content_disposition_get_parameters(
        g_mime_object_get_content_disposition(object.get())));
  }
  if (!a.content_id.empty()) {
    g_mime_object_set_content_id(object.get(), a.content_id.c_str());
  }
  setContent(part, *bytes);
  // Always base64: the bytes arrive as sent, whatever the type says (a text/* attachment in
  // 7bit would have its line ends rewritten).
  g_mime_part_set_content_encoding(part, GMIME_CONTENT_ENCODING_BASE64);
  return object;
}

GPtr<GMimeObject> multipart(const char* subtype, std::vector<GPtr<GMimeObject>> parts) {
  GMimeMultipart* mp = g_mime_multipart_new_with_subtype(subtype);
  for (const auto& p : parts) {
    g_mime_multipart_add(mp, p.get());
  }
  return GPtr<GMimeObject>(GMIME_OBJECT(mp));
}

// The MIME tree of submission.h's header comment.
Result<GPtr<GMimeObject>> bodyTree(const Draft& draft) {
  std::vector<GPtr<GMimeObject>> related;
  std::vector<GPtr<GMimeObject>> mixed;
  for (const auto& a : draft.attachments) {
    auto part = attachmentPart(a);
    if (!part) {
      return std::unexpected(std::move(part.error()));
    }
    const bool is_related = a.is_inline && !a.content_id.empty() && draft.has_html;
    (is_related ? related : mixed).push_back(std::move(*part));
  }
  GPtr<GMimeObject> html;
  if (draft.has_html) {
    html = textPart("html", draft.html);
    if (!related.empty()) {
      related.insert(related.begin(), std::move(html));
      html = multipart("related", std::move(related));
      g_mime_object_set_content_type_parameter(html.get(), "type", "text/html");
    }
  }
  GPtr<GMimeObject> body;
  if (draft.has_text && html) {
    std::vector<GPtr<GMimeObject>> alternatives;
    alternatives.push_back(textPart("plain", draft.text));
    alternatives.push_back(std::move(html));
    body = multipart("alternative", std::move(alternatives));
  } else if (draft.has_text) {
    body = textPart("plain", draft.text);
  } else {
    body = std::move(html);
  }
  if (mixed.empty()) {
    return body;
  }
  if (body) {
    mixed.insert(mixed.begin(), std::move(body));
  }
  return multipart("mixed", std::move(mixed));
}

// The JSON field a top-level header comes from, for an error about its line.
std::string fieldOfHeader(std::string_view name) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 6> kFields = {{
      {"From", "from"},
      {"To", "to"},
      {"Cc", "cc"},
      {"Reply-To", "reply_to"},
      {"Subject", "subject"},
      {"Message-ID", "message_id"},
  }};
  for (const auto& [header, field] : kFields) {
    if (equalsIgnoreCase(name, header)) {
      return std::string(field);
    }
  }
  return fmt::format("headers[{}]", echo(name));
}

// The finished text keeps the promises of submission.h: the header block within
// kMaxHeaderBytes, no line over 998 octets (GMime folds and encodes; this is the check).
Result<void> checkWritten(std::string_view data) {
  const std::size_t end = data.find("\r\n\r\n");
  const std::size_t header_bytes = end == std::string_view::npos ? data.size() : end + 4;
  if (header_bytes > relay::policy::kMaxHeaderBytes) {
    return failWith(kTooLarge, "headers",
                    "the header fields (addresses, subject, headers) add up to more than 256 KiB",
                    "send fewer or shorter header fields");
  }
  std::string_view field;
  std::size_t pos = 0;
  while (pos < data.size()) {
    std::size_t eol = data.find("\r\n", pos);
    eol = eol == std::string_view::npos ? data.size() : eol;
    const std::string_view line = data.substr(pos, eol - pos);
    const bool in_header = pos < header_bytes;
    if (in_header && !line.empty() && !isWsp(line.front())) {
      field = line.substr(0, line.find(':'));
    }
    if (line.size() > kMaxLine) {
      return invalid(in_header ? fieldOfHeader(field) : "body",
                     "would make a line longer than 998 octets",
                     "put spaces into long values, or shorten them");
    }
    pos = eol + 2;
  }
  return {};
}

} // namespace

Result<SubmittedMessage> composeFromJson(std::string_view text, const ComposeContext& ctx) {
  const ComposeLimits& limits = ctx.limits;
  const std::size_t max_json = limits.max_message_bytes <= SIZE_MAX / kJsonBytesPerMessageByte
                                   ? limits.max_message_bytes * kJsonBytesPerMessageByte
                                   : SIZE_MAX;
  if (text.size() > max_json) {
    return failWith(kTooLarge, "body",
                    fmt::format("the JSON body is larger than {} bytes", max_json),
                    fmt::format("keep the message under {} bytes", limits.max_message_bytes));
  }
  relay::policy::initGmime();
  SubmittedMessage out;
  GPtr<GMimeMessage> message;
  {
    // The parsed JSON lives only as long as this block: the attachments' base64 is not needed
    // once the GMime tree holds the bytes.
    auto parsed = parseJson(text);
    if (!parsed) {
      return std::unexpected(std::move(parsed.error()));
    }
    auto read = readDraft(*parsed, ctx);
    if (!read) {
      return std::unexpected(std::move(read.error()));
    }
    const Draft& draft = *read;

    std::size_t estimate = draft.text.size() + draft.html.size();
    for (const auto& a : draft.attachments) {
      estimate += decodedSizeBound(*a.content);
    }
    if (estimate > limits.max_message_bytes + 3 * draft.attachments.size()) {
      return failWith(kTooLarge, "body",
                      fmt::format("text, html and attachments add up to more than {} bytes",
                                  limits.max_message_bytes),
                      "send smaller attachments, or links to the files");
    }

    RecipientSet recipients;
    for (const auto* list : {&draft.to, &draft.cc, &draft.bcc}) {
      for (const auto& m : *list) {
        if (!recipients.add(m.envelope, limits.max_recipients)) {
          return failWith(kTooManyRecipients, "to, cc, bcc",
                          fmt::format("more than {} recipients after removing duplicates",
                                      limits.max_recipients),
                          "split the recipients over several messages");
        }
      }
    }
    out.from = draft.from->envelope;
    out.recipients = recipients.take();
    out.priority = draft.priority;
    out.smtputf8 = !isAscii(out.from) ||
                   std::any_of(out.recipients.begin(), out.recipients.end(),
                               [](const std::string& r) { return !isAscii(r); }) ||
                   std::any_of(draft.reply_to.begin(), draft.reply_to.end(),
                               [](const Mailbox& m) { return !isAscii(m.envelope); });
    if (draft.message_id.empty()) {
      auto id = generateMessageId(ctx.message_id_domain);
      if (!id) {
        return std::unexpected(std::move(id.error()));
      }
      out.message_id = std::move(*id);
    } else {
      out.message_id = draft.message_id;
    }

    message.reset(g_mime_message_new(FALSE));
    GMimeObject* object = GMIME_OBJECT(message.get());
    addMailboxes(message.get(), GMIME_ADDRESS_TYPE_FROM, {*draft.from});
    addMailboxes(message.get(), GMIME_ADDRESS_TYPE_REPLY_TO, draft.reply_to);
    addMailboxes(message.get(), GMIME_ADDRESS_TYPE_TO, draft.to);
    addMailboxes(message.get(), GMIME_ADDRESS_TYPE_CC, draft.cc);
    // Bcc is never written: its addresses are in the envelope only.
    if (draft.subject != nullptr) {
      g_mime_message_set_subject(message.get(), draft.subject->c_str(), "utf-8");
    }
    g_mime_object_set_header(object, "Date", formatDate(ctx.now_ms).c_str(), nullptr);
    g_mime_object_set_header(object, "Message-ID", out.message_id.c_str(), nullptr);
    GMimeHeaderList* headers = g_mime_object_get_header_list(object);
    for (const auto& [name, raw] : draft.headers) {
      // The value is written as folded here, not through GMime's formatter, which would turn
      // a long URL (List-Unsubscribe) into encoded words.
      g_mime_header_list_append(headers, name.c_str(), "", nullptr);
      GMimeHeader* header =
          g_mime_header_list_get_header_at(headers, g_mime_header_list_get_count(headers) - 1);
      g_mime_header_set_raw_value(header, raw.c_str());
    }
    auto body = bodyTree(draft);
    if (!body) {
      return std::unexpected(std::move(body.error()));
    }
    g_mime_message_set_mime_part(message.get(), body->get());
  }

  out.data = writeCrlf(GMIME_OBJECT(message.get()));
  message.reset();
  if (out.data.size() > limits.max_message_bytes) {
    return failWith(kTooLarge, "body",
                    fmt::format("the finished message is {} bytes; at most {}", out.data.size(),
                                limits.max_message_bytes),
                    "send smaller attachments, or links to the files");
  }
  if (auto written = checkWritten(out.data); !written) {
    return std::unexpected(std::move(written.error()));
  }
  out.body_8bit = !isAscii(out.data);
  return out;
}

} // namespace mailgate::message
