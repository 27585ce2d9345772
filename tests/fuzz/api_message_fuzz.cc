// Fuzzes the control API's message preparation (gateway/message/submission.h): composeFromJson
// and prepareRaw. Checks, beside "no crash, no sanitizer report":
// - a refusal has one of the documented codes, and texts that are short printable ASCII;
// - a finished message keeps every promise of SubmittedMessage: CRLF only and a final CRLF, no
//   Bcc and no X-Mailgate-* field, a Message-ID field holding message_id, a Date field, within
//   max_message_bytes and kMaxHeaderBytes of header, lines within 998 octets when composed,
//   recipients distinct and within max_recipients, body_8bit exactly when a byte is >= 0x80;
// - relay::policy::scanHeaders reads the finished message as the SMTP path would, and finds its
//   From to be exactly `from`;
// - prepareRaw of a finished message changes nothing (or finds no recipient left, when all of
//   them were Bcc), with recipients among the first ones: both paths agree on the result.
//
// Input layout: byte 0 picks the function (bit 0: JSON or raw), small limits (bit 1) and the
// ?priority= value for raw (bits 2-3); the rest is the body.
#include "gateway/message/submission.h"
#include "relay/policy/message_headers.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <source_location>
#include <string>
#include <string_view>

namespace message = mailgate::message;
namespace policy = mailgate::relay::policy;

namespace {

// Aborts, naming the line of the failed check (the fuzzer's report shows stderr).
void check(bool ok, std::source_location where = std::source_location::current()) {
  if (!ok) {
    std::fprintf(stderr, "api_message_fuzz: check failed at line %u\n", where.line());
    std::abort();
  }
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lowered(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

bool printable(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

void checkError(const mailgate::Error& e) {
  check(e.code == message::kInvalidJson || e.code == message::kInvalid ||
        e.code == message::kHeaderInjection || e.code == message::kTooLarge ||
        e.code == message::kTooManyRecipients || e.code == message::kTooManyAttachments);
  check(message::httpStatus(e.code) != 500);
  check(printable(e.message) && e.message.size() < 400 && !e.message.empty());
  check(printable(e.hint) && e.hint.size() < 400 && !e.hint.empty());
}

// Header field names at line starts in the header block, lower-cased.
std::vector<std::string> fieldNames(std::string_view header) {
  std::vector<std::string> names;
  std::size_t pos = 0;
  while (pos < header.size()) {
    std::size_t eol = header.find("\r\n", pos);
    eol = eol == std::string_view::npos ? header.size() : eol;
    const std::string_view line = header.substr(pos, eol - pos);
    if (!line.empty() && line.front() != ' ' && line.front() != '\t') {
      std::string_view name = line.substr(0, line.find(':'));
      while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) {
        name.remove_suffix(1);
      }
      names.push_back(lowered(name));
    }
    pos = eol + 2;
  }
  return names;
}

void checkMessage(const message::SubmittedMessage& out, const message::ComposeContext& ctx,
                  bool composed) {
  const std::string& data = out.data;
  check(data.size() <= ctx.limits.max_message_bytes);
  check(data.size() >= 2 && data.ends_with("\r\n"));
  for (std::size_t i = 0; i < data.size(); ++i) {
    check(data[i] != '\0');
    check(data[i] != '\n' || (i > 0 && data[i - 1] == '\r'));
    check(data[i] != '\r' || (i + 1 < data.size() && data[i + 1] == '\n'));
  }
  const bool high = std::any_of(data.begin(), data.end(),
                                [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
  check(out.body_8bit == high);

  const std::size_t end = data.find("\r\n\r\n");
  const std::string_view header =
      std::string_view(data).substr(0, end == std::string::npos ? data.size() : end + 2);
  check(header.size() <= policy::kMaxHeaderBytes);
  bool date = false;
  std::size_t ids = 0;
  for (const auto& name : fieldNames(header)) {
    check(name != "bcc");
    check(!name.starts_with("x-mailgate-"));
    date = date || name == "date";
    ids += name == "message-id" ? 1 : 0;
  }
  check(date && ids == 1);
  check(out.message_id.size() >= 3 && out.message_id.front() == '<' &&
        out.message_id.back() == '>');
  check(header.find(out.message_id) != std::string_view::npos);
  if (composed) {
    std::size_t pos = 0;
    while (pos < data.size()) {
      const std::size_t eol = data.find("\r\n", pos);
      check(eol - pos <= 998);
      pos = eol + 2;
    }
  }

  check(out.priority == "bulk" || out.priority == "personal");
  check(!out.from.empty() && out.from.find('@') != std::string::npos);
  check(!out.recipients.empty() && out.recipients.size() <= ctx.limits.max_recipients);
  std::set<std::string> distinct;
  for (const auto& r : out.recipients) {
    check(r.find('@') != std::string::npos);
    check(distinct.insert(lowered(r)).second);
  }

  const auto facts =
      policy::scanHeaders(data, out.smtputf8 || out.body_8bit ? policy::HeaderBytes::kUtf8
                                                              : policy::HeaderBytes::kAscii);
  check(facts.has_value());
  check(facts->from.size() == 1 && facts->from.front() == out.from);
  check(!facts->priority);

  // The finished message as a raw submission: nothing left to change.
  const auto again = message::prepareRaw(data, ctx, out.priority);
  if (!again) {
    check(again.error().code == message::kInvalid &&
          again.error().message.starts_with("To: the message has no recipients"));
    return;
  }
  check(again->data == data);
  check(again->from == out.from);
  check(again->message_id == out.message_id);
  check(again->priority == out.priority);
  check(again->body_8bit == out.body_8bit);
  for (const auto& r : again->recipients) {
    check(distinct.contains(lowered(r)));
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) {
    return 0;
  }
  const std::uint8_t selector = data[0];
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  message::ComposeContext ctx;
  ctx.message_id_domain = "fuzz.example";
  ctx.now_ms = 1709632800000;
  if ((selector & 2) != 0) {
    ctx.limits.max_recipients = 3;
    ctx.limits.max_attachments = 2;
    ctx.limits.max_message_bytes = 2000;
  }
  const bool raw = (selector & 1) != 0;
  static constexpr std::string_view kPriorities[] = {"", "personal", "BULK", "urgent"};
  const std::string_view priority = kPriorities[(selector >> 2) & 3];

  const auto out =
      raw ? message::prepareRaw(body, ctx, priority) : message::composeFromJson(body, ctx);
  if (!out) {
    checkError(out.error());
    return 0;
  }
  checkMessage(*out, ctx, !raw);
  return 0;
}
