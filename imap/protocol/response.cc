#include "imap/protocol/response.h"

#include "imap/protocol/ascii.h"

#include <algorithm>

namespace mailgate::imap::protocol {

std::optional<std::string> Value::asString() const {
  switch (kind) {
  case Kind::kString:
  case Kind::kAtom:
    return text;
  case Kind::kNil:
    return std::string();
  case Kind::kNumber:
  case Kind::kList:
    break;
  }
  return std::nullopt;
}

std::string Address::email() const {
  // RFC 3501 7.4.2: a NIL host marks a group (start when mailbox holds its name, end when NIL).
  if (host.empty()) {
    return {};
  }
  return mailbox + "@" + host;
}

bool ListData::hasAttribute(std::string_view attribute) const {
  return std::any_of(attributes.begin(), attributes.end(),
                     [attribute](const std::string& a) { return ascii::iequals(a, attribute); });
}

} // namespace mailgate::imap::protocol
