// Small pure helpers shared by composeFromJson and prepareRaw: error values, the echo of input in
// error texts, header text checks, Message-ID and Date. Internal to gateway/message/.
#pragma once

#include "base/error.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mailgate::message::detail {

// Errors: "<field>: <what>" with a hint, under one of the codes of submission.h.
[[nodiscard]] std::unexpected<Error> failWith(std::string_view code, std::string_view field,
                                              std::string_view what, std::string hint);

// At most kMaxEchoBytes of `text` in double quotes, every byte outside printable ASCII (and '"'
// and '\\') shown as '?', "..." after the quote when cut short.
[[nodiscard]] std::string echo(std::string_view text);

[[nodiscard]] char lowerAscii(char c);
[[nodiscard]] bool equalsIgnoreCase(std::string_view a, std::string_view b);
[[nodiscard]] bool startsWithIgnoreCase(std::string_view text, std::string_view prefix);
[[nodiscard]] bool isAscii(std::string_view text);
[[nodiscard]] bool isWsp(char c);

// RFC 5322 field name: one or more printable US-ASCII characters other than ':'.
[[nodiscard]] bool isFieldName(std::string_view name);

enum class TextProblem {
  kNone,
  kInjection, // CR, LF or NUL
  kControl,   // another C0 control character (tab is fine) or DEL
};
[[nodiscard]] TextProblem headerTextProblem(std::string_view text);

// The error for a header-bound text `field`, or nullopt when it is fine.
[[nodiscard]] std::optional<Error> checkHeaderText(std::string_view field, std::string_view text);

// RFC 5322 atext (ASCII) and dot-atom-text (non-empty atext runs separated by single dots).
[[nodiscard]] bool isAtext(char c);
[[nodiscard]] bool isDotAtomText(std::string_view text);

// RFC 5322 msg-id without CFWS: "<" dot-atom-text "@" (dot-atom-text | "[" dtext* "]") ">",
// ASCII, at most kMaxMessageIdBytes.
[[nodiscard]] bool isMessageId(std::string_view id);

// What readers take for a message id in practice: "<", printable ASCII other than space, '<'
// and '>', ">". Used where ids are copied from other mail (In-Reply-To, References, a raw
// Message-ID), whose senders did not all follow RFC 5322.
[[nodiscard]] bool isMessageIdToken(std::string_view id);

// "<" 26 lower-case base32 characters (128 random bits) "@" domain ">"; message.internal when the
// random generator fails. A domain that is not a dot-atom-text is replaced by "mailgate.invalid".
[[nodiscard]] Result<std::string> generateMessageId(std::string_view domain);

// RFC 5322 date-time in UTC, e.g. "Tue, 05 Mar 2024 10:00:00 +0000"; `now_ms` is clamped to
// 1970-01-01 .. 9999-12-31.
[[nodiscard]] std::string formatDate(int64_t now_ms);

} // namespace mailgate::message::detail
