// Builds IMAP commands so that no caller-supplied string can change their meaning: every
// argument goes out as an atom only when it is one, else as a quoted string, else as a literal;
// CR, LF and NUL never reach the line outside a literal. Sans-IO.
#pragma once

#include "base/error.h"
#include "imap/protocol/sequence_set.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::imap::protocol {

// How literals are sent (RFC 7888): kSync waits for the server's "+" before the literal's bytes;
// kPlus ("{n+}", LITERAL+) and kMinus (LITERAL-: "{n+}" up to 4096 bytes, kSync above) do not.
enum class LiteralMode { kSync, kPlus, kMinus };

// A built command. `chunks[0]` is sent first; each later chunk only after the server answered the
// previous one with a continuation ("+ ..."). A command without synchronizing literals is one
// chunk. Every chunk but the last ends with a literal announcement "{n}\r\n"; the last ends in
// CRLF.
struct Command {
  std::string tag;
  std::string name; // upper-cased, for logs
  std::vector<std::string> chunks;
  // Safe for logs: the command with every string argument's bytes (string(), astring(),
  // mailbox(), literal()) replaced by their length ("A1 LOGIN <19 bytes> <24 bytes>"). Never
  // holds a credential; atoms, raw items, numbers and sequence sets show as sent.
  std::string redacted;
};

class CommandBuilder {
public:
  // `tag` and `name` must be atoms (letters, digits, '.', '-'): a bad one makes build() fail.
  // `name` may be two such atoms separated by one space ("UID FETCH").
  CommandBuilder(std::string_view tag, std::string_view name,
                 LiteralMode mode = LiteralMode::kSync);

  // An atom we produce ourselves ("UID", "FLAGS", "\\Seen", "(UID FLAGS)" is not an atom: use
  // raw()). Anything outside atom-chars (plus '\\' leading a flag) fails build().
  CommandBuilder& atom(std::string_view text);
  // A keyword or item list we produce ourselves, sent as is: "(UID FLAGS RFC822.SIZE)",
  // "BODY.PEEK[HEADER]". Must hold only printable ASCII without CR/LF/NUL; else build() fails.
  CommandBuilder& raw(std::string_view text);
  CommandBuilder& number(uint64_t n);
  CommandBuilder& sequence(const SequenceSet& set);
  // A string from anywhere (user name, password, search text, an encoded mailbox name): quoted,
  // with '"' and '\\' escaped, when it is 7-bit printable (space included) and at most 1,024
  // bytes; else a literal (sent as the builder's LiteralMode says). A NUL byte cannot be sent in
  // a string (RFC 9051 CHAR8) and makes build() fail.
  CommandBuilder& string(std::string_view text);
  // astring: an atom when the text is a valid astring atom (and not "NIL"), else as string().
  CommandBuilder& astring(std::string_view text);
  // A mailbox name given in UTF-8: encoded to modified UTF-7 (RFC 3501 5.1.3) unless `utf8`
  // (UTF8=ACCEPT enabled), then as astring(). "INBOX" in any case is sent as INBOX.
  CommandBuilder& mailbox(std::string_view utf8_name, bool utf8 = false);
  // Always a literal (APPEND's message). `binary` sends literal8 "~{n}" (RFC 3516), the only form
  // that may carry NUL; a NUL in a non-binary literal makes build() fail.
  CommandBuilder& literal(std::string_view bytes, bool binary = false);

  // The command, or the first problem: "imap.command" naming the argument that could not be sent.
  [[nodiscard]] Result<Command> build() &&;
  // The same for a chain on a temporary ("CommandBuilder(t, "NOOP").atom(x).build()", where the
  // chain yields an lvalue). Either form spends the builder: it must not be used afterwards.
  [[nodiscard]] Result<Command> build() &;

private:
  void separator();
  // Records the first problem (later calls are then no-ops); never quotes the argument's bytes.
  void refuse(std::string_view what);
  CommandBuilder& appendLiteral(std::string_view bytes, bool binary);
  std::string tag_, name_;
  LiteralMode mode_;
  std::vector<std::string> chunks_;
  std::string redacted_;
  std::optional<Error> error_;
  std::size_t arguments_ = 0; // for error messages: which argument was refused
};

// SASL-IR and AUTHENTICATE continuation answers are sent as one base64 line: this makes
// "<base64>\r\n" (or "=\r\n" for an empty response, RFC 4959).
[[nodiscard]] std::string saslResponseLine(std::string_view raw);

} // namespace mailgate::imap::protocol
