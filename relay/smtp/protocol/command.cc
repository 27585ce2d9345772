#include "relay/smtp/protocol/command.h"

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

namespace mailgate::relay::smtp {
namespace {

char upper(char c) {
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c;
}

std::string toUpper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), upper);
  return out;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return upper(x) == upper(y); });
}

bool startsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && equalsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

bool isSpace(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trimLeft(std::string_view s) {
  while (!s.empty() && isSpace(s.front())) {
    s.remove_prefix(1);
  }
  return s;
}

std::string_view trimRight(std::string_view s) {
  while (!s.empty() && isSpace(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}
bool isAlnum(char c) {
  return isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::unexpected<Error> syntax(std::string message) {
  return fail("smtp.command.syntax", std::move(message));
}

// esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
bool isKeyword(std::string_view s) {
  return !s.empty() && isAlnum(s.front()) &&
         std::all_of(s.begin(), s.end(), [](char c) { return isAlnum(c) || c == '-'; });
}

// esmtp-value = 1*(%d33-60 / %d62-126), and UTF-8 is allowed in SMTPUTF8 sessions (RFC 6531);
// we accept bytes above 0x7f here and leave the meaning to the parameter.
bool isValue(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return (c >= 33 && c <= 60) || (c >= 62 && c <= 126) || c >= 0x80;
  });
}

// xtext = *( xchar / hexchar ), xchar = "!".."~" except "+" and "=", hexchar = "+" 2HEXUPPER
bool isXtext(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '+') {
      auto hex = [](char h) { return isDigit(h) || (h >= 'A' && h <= 'F'); };
      if (i + 2 >= s.size()) {
        return false;
      }
      if (!hex(s[i + 1]) || !hex(s[i + 2])) {
        return false;
      }
      i += 2;
    } else if (c < '!' || c > '~' || c == '=') {
      return false;
    }
  }
  return true;
}

struct Param {
  std::string keyword; // upper-cased
  std::string_view value;
  bool has_value = false;
};

// Splits "FROM:<path> KEY=VALUE KEY" after the verb. `prefix` is "FROM:" or "TO:".
Result<std::pair<std::string_view, std::vector<Param>>>
splitPathAndParams(std::string_view args, std::string_view prefix, std::string usage) {
  if (!startsWithIgnoreCase(args, prefix)) {
    return syntax(std::move(usage));
  }
  // RFC 5321 has no space after the colon, but many clients send one; it is harmless.
  std::string_view rest = trimLeft(args.substr(prefix.size()));
  if (rest.empty() || rest.front() != '<') {
    return syntax(std::move(usage));
  }
  // The path ends at the first '>' outside a quoted local part.
  std::size_t end = std::string_view::npos;
  bool quoted = false;
  for (std::size_t i = 1; i < rest.size(); ++i) {
    const char c = rest[i];
    if (quoted && c == '\\') {
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (!quoted && c == '>') {
      end = i;
      break;
    }
  }
  if (end == std::string_view::npos) {
    return syntax(std::move(usage));
  }
  const std::string_view path = rest.substr(0, end + 1);
  std::string_view tail = rest.substr(end + 1);
  if (!tail.empty() && !isSpace(tail.front())) {
    return syntax(std::move(usage));
  }
  std::vector<Param> params;
  tail = trimLeft(tail);
  while (!tail.empty()) {
    std::size_t sp = 0;
    while (sp < tail.size() && !isSpace(tail[sp])) {
      ++sp;
    }
    const std::string_view token = tail.substr(0, sp);
    tail = trimLeft(tail.substr(sp));
    const std::size_t eq = token.find('=');
    Param p;
    const std::string_view keyword = token.substr(0, eq);
    if (!isKeyword(keyword)) {
      return syntax("Syntax error in parameters");
    }
    p.keyword = toUpper(keyword);
    if (eq != std::string_view::npos) {
      p.value = token.substr(eq + 1);
      p.has_value = true;
      if (!isValue(p.value)) {
        return syntax("Syntax error in parameters");
      }
    }
    if (std::any_of(params.begin(), params.end(),
                    [&](const Param& q) { return q.keyword == p.keyword; })) {
      return syntax("Duplicate parameter " + p.keyword);
    }
    if (params.size() >= 16) {
      return syntax("Too many parameters");
    }
    params.push_back(std::move(p));
  }
  return std::pair{path, std::move(params)};
}

std::unexpected<Error> unsupported(const Param& p) {
  // The keyword passed isKeyword(), so echoing it cannot inject anything.
  return fail("smtp.command.parameter", "Unsupported parameter " + p.keyword.substr(0, 32));
}

Result<Command> parseMail(std::string_view args) {
  auto split = splitPathAndParams(args, "FROM:", "Syntax: MAIL FROM:<address>");
  if (!split) {
    return std::unexpected(split.error());
  }
  Command cmd;
  cmd.verb = Verb::kMail;
  auto path = parsePath(split->first, PathKind::kReversePath);
  if (!path) {
    return fail("smtp.command.address", path.error().message);
  }
  cmd.path = std::move(*path);
  for (const Param& p : split->second) {
    cmd.mail.any = true;
    if (p.keyword == "SIZE") {
      if (!p.has_value || p.value.size() > 19 ||
          !std::all_of(p.value.begin(), p.value.end(), isDigit)) {
        return syntax("Bad SIZE parameter");
      }
      std::uint64_t n = 0;
      for (const char c : p.value) {
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
      }
      cmd.mail.size = n;
    } else if (p.keyword == "BODY") {
      if (p.has_value && equalsIgnoreCase(p.value, "7BIT")) {
        cmd.mail.body = BodyType::k7Bit;
      } else if (p.has_value && equalsIgnoreCase(p.value, "8BITMIME")) {
        cmd.mail.body = BodyType::k8BitMime;
      } else if (p.has_value && equalsIgnoreCase(p.value, "BINARYMIME")) {
        return fail("smtp.command.parameter", "BODY=BINARYMIME is not supported");
      } else {
        return syntax("Bad BODY parameter");
      }
    } else if (p.keyword == "SMTPUTF8") {
      if (p.has_value) {
        return syntax("SMTPUTF8 takes no value");
      }
      cmd.mail.smtputf8 = true;
    } else if (p.keyword == "RET") {
      if (!p.has_value ||
          !(equalsIgnoreCase(p.value, "FULL") || equalsIgnoreCase(p.value, "HDRS"))) {
        return syntax("Bad RET parameter");
      }
      cmd.mail.ret = toUpper(p.value);
    } else if (p.keyword == "ENVID") {
      if (!p.has_value || p.value.size() > 100 || !isXtext(p.value)) {
        return syntax("Bad ENVID parameter");
      }
      cmd.mail.envid = std::string(p.value);
    } else {
      return unsupported(p);
    }
  }
  if (cmd.path.non_ascii && !cmd.mail.smtputf8) {
    // Reported as an address problem so the session can answer 553 5.6.7 (RFC 6531 section 3.5).
    return fail("smtp.command.utf8", "Non-ASCII address requires SMTPUTF8");
  }
  return cmd;
}

Result<Command> parseRcpt(std::string_view args) {
  auto split = splitPathAndParams(args, "TO:", "Syntax: RCPT TO:<address>");
  if (!split) {
    return std::unexpected(split.error());
  }
  Command cmd;
  cmd.verb = Verb::kRcpt;
  auto path = parsePath(split->first, PathKind::kForwardPath);
  if (!path) {
    return fail("smtp.command.address", path.error().message);
  }
  cmd.path = std::move(*path);
  for (const Param& p : split->second) {
    cmd.rcpt.any = true;
    if (p.keyword == "NOTIFY" && p.has_value) {
      cmd.rcpt.notify = toUpper(p.value);
    } else if (p.keyword == "ORCPT" && p.has_value) {
      cmd.rcpt.orcpt = std::string(p.value);
    } else {
      return unsupported(p);
    }
  }
  return cmd;
}

Result<Command> parseAuth(std::string_view args) {
  if (args.empty()) {
    return syntax("Syntax: AUTH mechanism [initial-response]");
  }
  const std::size_t sp = args.find_first_of(" \t");
  const std::string_view mech = args.substr(0, sp);
  // sasl-mech = 1*20mech-char; mech-char = UPPER-ALPHA / DIGIT / HYPHEN / UNDERSCORE
  if (mech.size() > 20 || !std::all_of(mech.begin(), mech.end(),
                                       [](char c) { return isAlnum(c) || c == '-' || c == '_'; })) {
    return syntax("Syntax: AUTH mechanism [initial-response]");
  }
  Command cmd;
  cmd.verb = Verb::kAuth;
  cmd.auth_mechanism = toUpper(mech);
  if (sp != std::string_view::npos) {
    const std::string_view response = trimLeft(args.substr(sp));
    if (response.find_first_of(" \t") != std::string_view::npos) {
      return syntax("Syntax: AUTH mechanism [initial-response]");
    }
    cmd.auth_initial_response = std::string(response);
  }
  return cmd;
}

struct VerbName {
  std::string_view name;
  Verb verb;
};

constexpr std::array<VerbName, 14> kVerbs = {{
    {"HELO", Verb::kHelo},
    {"EHLO", Verb::kEhlo},
    {"MAIL", Verb::kMail},
    {"RCPT", Verb::kRcpt},
    {"DATA", Verb::kData},
    {"BDAT", Verb::kBdat},
    {"RSET", Verb::kRset},
    {"NOOP", Verb::kNoop},
    {"QUIT", Verb::kQuit},
    {"VRFY", Verb::kVrfy},
    {"EXPN", Verb::kExpn},
    {"HELP", Verb::kHelp},
    {"STARTTLS", Verb::kStartTls},
    {"AUTH", Verb::kAuth},
}};

} // namespace

Result<Command> parseCommand(std::string_view line) {
  line = trimRight(line);
  const std::size_t sp = line.find_first_of(" \t");
  const std::string_view verb_text = line.substr(0, sp);
  const std::string_view args =
      sp == std::string_view::npos ? std::string_view{} : trimLeft(line.substr(sp));
  const auto found = std::find_if(kVerbs.begin(), kVerbs.end(), [&](const VerbName& v) {
    return equalsIgnoreCase(v.name, verb_text);
  });
  if (found == kVerbs.end()) {
    return fail("smtp.command.unknown", "Error: command not recognized");
  }
  Command cmd;
  cmd.verb = found->verb;
  switch (found->verb) {
  case Verb::kHelo:
  case Verb::kEhlo: {
    // RFC 5321 wants a Domain or an address literal. Real clients send bare host names, names
    // with underscores and the like; one printable token is accepted and only used in trace
    // headers, never trusted.
    const bool ehlo = found->verb == Verb::kEhlo;
    if (args.empty() || args.size() > 255 || !std::all_of(args.begin(), args.end(), [](char ch) {
          const auto c = static_cast<unsigned char>(ch);
          return c > 32 && c < 127;
        })) {
      return syntax(ehlo ? "Syntax: EHLO hostname" : "Syntax: HELO hostname");
    }
    cmd.argument = std::string(args);
    return cmd;
  }
  case Verb::kMail:
    return parseMail(args);
  case Verb::kRcpt:
    return parseRcpt(args);
  case Verb::kAuth:
    return parseAuth(args);
  case Verb::kData:
  case Verb::kRset:
  case Verb::kQuit:
  case Verb::kStartTls:
    if (!args.empty()) {
      return syntax("Syntax: " + std::string(found->name));
    }
    return cmd;
  case Verb::kVrfy:
  case Verb::kExpn:
    if (args.empty()) {
      return syntax("Syntax: " + std::string(found->name) + " address");
    }
    cmd.argument = std::string(args);
    return cmd;
  case Verb::kNoop:
  case Verb::kHelp:
  case Verb::kBdat:
    cmd.argument = std::string(args);
    return cmd;
  }
  return fail("smtp.command.unknown", "Error: command not recognized");
}

} // namespace mailgate::relay::smtp
