#include "gateway/message/summary.h"

#include "relay/policy/address_list.h"
#include "relay/policy/message_headers.h"

#include <gmime/gmime.h>
#include <memory>
#include <optional>

namespace mailgate::message {

namespace {

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool isBlank(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && isBlank(v.front())) {
    v.remove_prefix(1);
  }
  while (!v.empty() && isBlank(v.back())) {
    v.remove_suffix(1);
  }
  return v;
}

// The field's name if `line` starts one ("Name" then optional blanks then ':'), with `value`
// set to what follows the colon.
std::optional<std::string_view> fieldName(std::string_view line, std::string_view& value) {
  const auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return std::nullopt;
  }
  std::string_view name = line.substr(0, colon);
  while (!name.empty() && isBlank(name.back())) {
    name.remove_suffix(1);
  }
  for (const char c : name) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return std::nullopt;
    }
  }
  if (name.empty()) {
    return std::nullopt;
  }
  value = line.substr(colon + 1);
  return name;
}

bool sameName(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) {
      return false;
    }
  }
  return true;
}

// The unfolded values of the first Message-ID, From, To, Cc, Subject and Date fields.
struct Fields {
  std::optional<std::string> message_id, from, to, cc, subject, date;
  std::optional<std::string>* slot(std::string_view name) {
    if (sameName(name, "message-id")) {
      return &message_id;
    }
    if (sameName(name, "from")) {
      return &from;
    }
    if (sameName(name, "to")) {
      return &to;
    }
    if (sameName(name, "cc")) {
      return &cc;
    }
    if (sameName(name, "subject")) {
      return &subject;
    }
    if (sameName(name, "date")) {
      return &date;
    }
    return nullptr;
  }
};

Fields readFields(std::string_view raw) {
  Fields f;
  std::string_view text = raw.substr(0, relay::policy::kMaxHeaderBytes);
  std::optional<std::string>* current = nullptr; // the field continuation lines belong to
  bool too_long = false;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = pos;
    while (end < text.size() && text[end] != '\r' && text[end] != '\n') {
      ++end;
    }
    const std::string_view line = text.substr(pos, end - pos);
    if (end < text.size()) {
      end += (text[end] == '\r' && end + 1 < text.size() && text[end + 1] == '\n') ? 2 : 1;
    }
    pos = end;
    if (line.empty()) {
      break; // the end of the header block
    }
    if (isBlank(line.front())) {
      if (current != nullptr && !too_long) {
        (*current)->append(line);
        too_long = (*current)->size() > kMaxSummaryFieldBytes;
      }
      continue;
    }
    current = nullptr;
    too_long = false;
    std::string_view value;
    const auto name = fieldName(line, value);
    if (!name) {
      continue;
    }
    auto* slot = f.slot(*name);
    if (slot == nullptr || slot->has_value()) {
      continue; // not wanted, or not the first of its name
    }
    slot->emplace(value.substr(0, kMaxSummaryFieldBytes + 1));
    too_long = (*slot)->size() > kMaxSummaryFieldBytes;
    current = slot;
  }
  return f;
}

std::vector<std::string> addresses(const std::optional<std::string>& value) {
  std::vector<std::string> out;
  if (!value || value->size() > kMaxSummaryFieldBytes) {
    return out;
  }
  relay::policy::AddressListRules rules;
  rules.bytes = relay::policy::HeaderBytes::kUtf8;
  rules.max_mailboxes = kMaxSummaryAddresses;
  auto list = relay::policy::parseAddressList(*value, rules);
  if (!list) {
    return out;
  }
  out.reserve(list->mailboxes.size());
  for (auto& m : list->mailboxes) {
    out.push_back(std::move(m.envelope));
  }
  return out;
}

std::string messageId(const std::optional<std::string>& value) {
  if (!value) {
    return {};
  }
  const auto open = value->find('<');
  const auto close = open == std::string::npos ? open : value->find('>', open);
  if (close == std::string::npos) {
    return {};
  }
  return value->substr(open, close - open + 1);
}

struct GFree {
  void operator()(gpointer p) const { g_free(p); }
};

// GMime works on NUL-terminated strings: a value holding NUL is read up to it.
std::string decodeText(std::string_view value) {
  const std::string copy(trim(value.substr(0, kMaxSummaryFieldBytes)));
  std::unique_ptr<char, GFree> decoded(g_mime_utils_header_decode_text(nullptr, copy.c_str()));
  return decoded ? std::string(decoded.get()) : copy;
}

std::string decodeDate(std::string_view value) {
  const std::string copy(trim(value.substr(0, kMaxSummaryFieldBytes)));
  GDateTime* when = g_mime_utils_header_decode_date(copy.c_str());
  if (when == nullptr) {
    return copy;
  }
  GDateTime* utc = g_date_time_to_utc(when);
  g_date_time_unref(when);
  if (utc == nullptr) {
    return copy;
  }
  std::unique_ptr<char, GFree> text(g_date_time_format(utc, "%Y-%m-%dT%H:%M:%SZ"));
  g_date_time_unref(utc);
  return text ? std::string(text.get()) : copy;
}

} // namespace

MessageSummary summarize(std::string_view raw) {
  relay::policy::initGmime();
  const Fields f = readFields(raw);
  MessageSummary s;
  s.message_id = messageId(f.message_id);
  if (auto from = addresses(f.from); !from.empty()) {
    s.from = std::move(from.front());
  }
  s.to = addresses(f.to);
  s.cc = addresses(f.cc);
  if (f.subject) {
    s.subject = decodeText(*f.subject);
  }
  if (f.date) {
    s.date = decodeDate(*f.date);
  }
  return s;
}

} // namespace mailgate::message
