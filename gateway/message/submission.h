// Turns a message submitted to the control API (POST /v1/messages) into what the queue stores:
// the envelope (sender and recipients), the finished RFC 5322 message, and the facts routing and
// delivery need (priority, SMTPUTF8, 8-bit data).
//
// One entry point per request body:
// - composeFromJson (Content-Type application/json) builds a MIME message with GMime from the
//   JSON shape below;
// - prepareRaw (Content-Type message/rfc822) keeps the client's message as written and makes only
//   the changes listed above it.
//
// Both are pure and re-entrant: no I/O, no clock (the time comes in ComposeContext::now_ms), no
// state between calls; they may run on several threads at once. The only outside input is 128
// bits from OpenSSL's RAND_bytes for each Message-ID they generate. GMime is initialised once, on
// first use (relay::policy::initGmime). Time is linear in the input; memory is a small multiple
// of it (the parsed JSON, the decoded attachments, the GMime tree, the written message), and
// every input is bounded by a limit named here or in ComposeLimits.
//
// Errors are mailgate::Error values. `message` starts with the field it is about: a JSON path for
// JSON ("to[1].address: not an email address", "attachments[0].content: not base64 at offset
// 12"), the header field name for raw messages ("From: ..."). `hint` says what to send instead.
// A text echoes at most kMaxEchoBytes of the input, quoted, with every byte that is not
// printable ASCII shown as '?'. Codes and the HTTP status the API answers with:
//
//   code                          status  when
//   message.invalid_json           400    not JSON; not an object; a duplicate key; a value of the
//                                         wrong JSON type; nesting deeper than the shape
//   message.invalid                422    missing or empty from; a bad address; no recipients; an
//                                         unknown field (named, with the closest known name); bad
//                                         base64; an unknown priority or disposition; a reserved
//                                         or malformed header name; a bad message_id, content_id
//                                         or content_type; a control character in a header-bound
//                                         text; no body part at all (no text, html or attachment);
//                                         a raw message without exactly one From mailbox, with a
//                                         NUL byte, a malformed Message-ID or an X-Mailgate-*
//                                         field other than X-Mailgate-Priority
//   message.header_injection       400    CR, LF or NUL in anything that becomes a header field
//                                         (subject, names, addresses, attachment names, content
//                                         types and content ids, custom header names and values,
//                                         message_id); a bare CR in a raw message's header block
//   message.too_large              413    the finished message over max_message_bytes; its header
//                                         block over relay::policy::kMaxHeaderBytes; a JSON body
//                                         over kJsonBytesPerMessageByte * max_message_bytes
//   message.too_many_recipients    422    more than max_recipients after de-duplication
//   message.too_many_attachments   422    more than max_attachments
//   message.internal               500    the system's random generator failed (no Message-ID)
//
// JSON shape (every field optional unless said; null is the same as absent):
//
//   {
//     "from": ADDR,                        required: the sender, one mailbox
//     "to": ADDR | [ADDR], "cc": ..., "bcc": ...     at least one recipient in all three
//     "reply_to": ADDR | [ADDR],
//     "subject": "text",                   UTF-8; RFC 2047 encoded when not ASCII
//     "text": "text",                      text/plain; charset=utf-8
//     "html": "text",                      text/html; charset=utf-8
//     "attachments": [{
//       "content": "<base64>",             required: RFC 4648 standard alphabet; padding may be
//                                          left out; spaces and line breaks are ignored
//       "name": "a.pdf",                   file name; RFC 2231 encoded when not ASCII
//       "content_type": "application/pdf", default application/octet-stream; type/subtype and
//                                          optional ;name=value parameters; not multipart/* or
//                                          message/*
//       "disposition": "attachment" | "inline",     default "attachment"
//       "content_id": "logo"               Content-ID (without or with <>); an inline attachment
//                                          with a content_id is related to the html ("cid:logo")
//     }],
//     "priority": "bulk" | "personal",     default "bulk" (case-insensitive)
//     "headers": {"X-Campaign": "q4", "In-Reply-To": "<id@host>", "References": "<a@h> <b@h>"},
//     "message_id": "<id@domain>"          default: generated; the angle brackets may be left out
//   }
//
// ADDR is a string holding exactly one mailbox ("jane@example.com", "Jane Doe
// <jane@example.com>"; no groups, no lists) or an object {"name": "Jane Doe", "address":
// "jane@example.com"} ("name" optional). An address is an addr-spec of at most kMaxAddrSpecBytes
// (local part at most 64 octets), non-ASCII allowed (EAI). Custom header names are RFC 5322
// field names; the reserved ones are refused: From, Sender, To, Cc, Bcc, Reply-To, Subject, Date,
// Message-ID, MIME-Version, Received, Return-Path, Content-*, Resent-* and X-Mailgate-*.
// In-Reply-To and References must hold message ids ("<...>", separated by spaces). Values are
// UTF-8, RFC 2047 encoded when not ASCII; ASCII values are written as given, folded at spaces.
//
// The MIME structure: text alone is text/plain, html alone text/html, both multipart/alternative
// (text first); inline attachments with a content_id go into a multipart/related with the html
// (inside the alternative when there is text too); the other attachments (and inline ones when
// there is no html) make a multipart/mixed around the rest. Text and html line ends become CRLF
// (the canonical form of text, RFC 2046 section 4.1.1); GMime chooses 7bit, quoted-printable or
// base64 for them, so that every line is at most 998 octets and the data is 7-bit unless an
// address is not ASCII. Attachments are always base64, so their bytes arrive unchanged.
#pragma once

#include "base/error.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::message {

inline constexpr std::string_view kInvalidJson = "message.invalid_json";
inline constexpr std::string_view kInvalid = "message.invalid";
inline constexpr std::string_view kHeaderInjection = "message.header_injection";
inline constexpr std::string_view kTooLarge = "message.too_large";
inline constexpr std::string_view kTooManyRecipients = "message.too_many_recipients";
inline constexpr std::string_view kTooManyAttachments = "message.too_many_attachments";
inline constexpr std::string_view kInternal = "message.internal";

// The HTTP status for one of the codes above (400, 413, 422 or 500); 500 for any other code.
[[nodiscard]] int httpStatus(std::string_view code);

// Bounds besides ComposeLimits and relay::policy::kMaxHeaderBytes (the header block):
inline constexpr std::size_t kMaxEchoBytes = 40;           // input echoed in an error text
inline constexpr std::size_t kJsonBytesPerMessageByte = 2; // JSON body vs max_message_bytes
inline constexpr int kMaxJsonNesting = 3;                  // root object, array, object
inline constexpr std::size_t kMaxAddrSpecBytes = 254;      // RFC 5321 path minus "<>"
inline constexpr std::size_t kMaxAddressTextBytes = 998;   // an ADDR string; a display name
inline constexpr std::size_t kMaxMessageIdBytes = 250;     // message_id, content_id
inline constexpr std::size_t kMaxGroupsPerField = 64;      // ':' in one raw To, Cc or Bcc

struct ComposeLimits {
  std::size_t max_recipients = 1000;        // to+cc+bcc after de-duplication
  std::size_t max_message_bytes = 36700160; // of the finished message
  std::size_t max_attachments = 100;
};

struct ComposeContext {
  // Right side of generated Message-IDs, e.g. the node's host name. When it is not a dot-atom
  // (empty, say), "mailgate.invalid" is used instead.
  std::string message_id_domain;
  int64_t now_ms = 0; // wall clock, ms since the epoch, for Date (UTC; clamped to years 1970-9999)
  ComposeLimits limits;
};

struct SubmittedMessage {
  // addr-spec of the single From mailbox: the envelope sender. An internationalised domain is
  // given in its ASCII (IDNA) form, as relay::policy::scanHeaders gives it on the SMTP path.
  std::string from;
  // addr-specs of to, cc and bcc, in that order, in the same form as `from`; duplicates (ASCII
  // case-insensitive) removed, the first spelling kept.
  std::vector<std::string> recipients;
  // The RFC 5322 message: CRLF line ends only, ending in CRLF; no Bcc field, no X-Mailgate-*
  // field; Date and Message-ID present. A composed message also has MIME-Version; a raw one has
  // it only if the client wrote it.
  std::string data;
  std::string message_id;        // "<...>", as in the data
  std::string priority = "bulk"; // "bulk" or "personal"
  bool smtputf8 = false;         // an address (envelope, or Reply-To when composed) is not ASCII
  bool body_8bit = false;        // data holds bytes >= 0x80
};

// Builds the message described by a JSON body (the shape above).
[[nodiscard]] Result<SubmittedMessage> composeFromJson(std::string_view json,
                                                       const ComposeContext& ctx);

// Prepares a raw RFC 5322 message. `priority` is the optional ?priority= query value ("bulk" or
// "personal", case-insensitive); empty: the X-Mailgate-Priority field's value, or bulk without
// one. The changes made to the message:
// - every line end becomes CRLF (CRLF, bare LF and, in the body, bare CR; a bare CR in the header
//   block is refused as header injection), and a missing final line end is added;
// - every Bcc field and X-Mailgate-Priority are removed (relay::policy::removeHeaderField);
// - Date and Message-ID are added at the top when missing.
// Nothing else changes: no MIME-Version is added, the body is not re-encoded. The header block is
// read with relay::policy::scanHeaders, as on the SMTP path; it must hold exactly one From
// mailbox. Recipients come from every To, Cc and Bcc field (groups flattened; Resent-* fields are
// neither read nor changed). Refused: a NUL byte anywhere; a header line that is neither a field
// nor a continuation line; an address field with a control character, bytes that are not UTF-8,
// an unclosed quote, comment or domain literal, or an address that does not stand in it as
// written (GMime reads loosely: "a@e\x7fxample.com" would be a@e); another X-Mailgate-* field;
// more than one Message-ID field, or one that holds no "<...>".
[[nodiscard]] Result<SubmittedMessage>
prepareRaw(std::string_view rfc822, const ComposeContext& ctx, std::string_view priority);

} // namespace mailgate::message
