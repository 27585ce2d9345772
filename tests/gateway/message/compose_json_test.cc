#include "gateway/message/submission.h"
#include "message_test_support.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace mailgate::message {
namespace {

using namespace testing;
using nlohmann::json;

std::string base64(std::string_view bytes) {
  gchar* text = g_base64_encode(reinterpret_cast<const guchar*>(bytes.data()), bytes.size());
  std::string out = text;
  g_free(text);
  return out;
}

json basic() {
  return {{"from", "Rep One <rep1@acme.example>"},
          {"to", "jane@example.com"},
          {"subject", "Hello"},
          {"text", "Hi Jane\n"}};
}

SubmittedMessage compose(const json& body, const ComposeContext& ctx = context()) {
  auto out = composeFromJson(body.dump(), ctx);
  EXPECT_TRUE(out.has_value()) << (out ? "" : out.error().describe());
  if (!out) {
    return {};
  }
  EXPECT_TRUE(crlfOnly(out->data));
  EXPECT_LE(longestLine(out->data), 998u);
  return *out;
}

Error composeError(std::string_view body, const ComposeContext& ctx = context()) {
  auto out = composeFromJson(body, ctx);
  EXPECT_FALSE(out.has_value()) << body.substr(0, 200);
  if (out) {
    return {};
  }
  expectTidyError(out.error());
  return out.error();
}

Error composeError(const json& body, const ComposeContext& ctx = context()) {
  return composeError(std::string_view(body.dump()), ctx);
}

void expectError(const json& body, std::string_view code, std::string_view message_start) {
  const Error e = composeError(body);
  EXPECT_EQ(e.code, code) << e.describe();
  EXPECT_TRUE(e.message.starts_with(message_start)) << e.describe();
}

// --- structure ---------------------------------------------------------------------------------

TEST(ComposeJson, TextOnlyIsTextPlainUtf8WithTheStandardFields) {
  const auto out = compose(basic());
  EXPECT_EQ(out.from, "rep1@acme.example");
  EXPECT_EQ(out.recipients, (std::vector<std::string>{"jane@example.com"}));
  EXPECT_EQ(out.priority, "bulk");
  EXPECT_FALSE(out.smtputf8);
  EXPECT_FALSE(out.body_8bit);
  const auto message = parseMessage(out.data);
  GMimeObject* body = g_mime_message_get_mime_part(message.get());
  EXPECT_EQ(mimeType(body), "text/plain");
  EXPECT_EQ(contentTypeParameter(body, "charset"), "utf-8");
  EXPECT_EQ(decodedContent(body), "Hi Jane\r\n");
  EXPECT_EQ(header(message.get(), "Subject"), "Hello");
  EXPECT_EQ(header(message.get(), "Date"), "Tue, 05 Mar 2024 10:00:00 +0000");
  EXPECT_EQ(header(message.get(), "MIME-Version"), "1.0");
  EXPECT_EQ(header(message.get(), "Message-ID"), out.message_id);
  EXPECT_TRUE(std::regex_match(out.message_id, std::regex("<[a-z2-7]{26}@node1\\.example>")))
      << out.message_id;
  InternetAddressList* from = g_mime_message_get_from(message.get());
  ASSERT_EQ(internet_address_list_length(from), 1);
  EXPECT_STREQ(internet_address_get_name(internet_address_list_get_address(from, 0)), "Rep One");
  EXPECT_EQ(headerNames(out.data),
            (std::vector<std::string>{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version",
                                      "Content-Type"}));
}

TEST(ComposeJson, HtmlOnlyIsTextHtml) {
  json body = basic();
  body.erase("text");
  body["html"] = "<p>Hi <b>Jane</b></p>";
  const auto message = parseMessage(compose(body).data);
  GMimeObject* part = g_mime_message_get_mime_part(message.get());
  EXPECT_EQ(mimeType(part), "text/html");
  EXPECT_EQ(contentTypeParameter(part, "charset"), "utf-8");
  // A single-part body is followed by nothing: the CRLF that ends the message is its own.
  EXPECT_EQ(decodedContent(part), "<p>Hi <b>Jane</b></p>\r\n");
}

TEST(ComposeJson, TextAndHtmlAreAlternativesTextFirst) {
  json body = basic();
  body["html"] = "<p>Hi Jane</p>\n";
  const auto message = parseMessage(compose(body).data);
  GMimeObject* top = g_mime_message_get_mime_part(message.get());
  EXPECT_EQ(mimeType(top), "multipart/alternative");
  const auto parts = children(top);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(mimeType(parts[0]), "text/plain");
  EXPECT_EQ(decodedContent(parts[0]), "Hi Jane\r\n");
  EXPECT_EQ(mimeType(parts[1]), "text/html");
  EXPECT_EQ(decodedContent(parts[1]), "<p>Hi Jane</p>\r\n");
}

TEST(ComposeJson, AttachmentsMakeAMixedAroundTheBodyAndKeepTheirBytes) {
  std::string pdf;
  for (int i = 0; i < 3000; ++i) {
    pdf.push_back(static_cast<char>((i * 37) & 0xff));
  }
  const std::string csv = "a,b\nc,d\n"; // bare LF must survive: attachments are base64
  json body = basic();
  body["html"] = "<p>Hi</p>";
  body["attachments"] = {
      {{"name", "report.pdf"}, {"content_type", "application/pdf"}, {"content", base64(pdf)}},
      {{"name", "data.csv"}, {"content_type", "text/csv; charset=utf-8"}, {"content", base64(csv)}},
  };
  const auto out = compose(body);
  const auto message = parseMessage(out.data);
  GMimeObject* top = g_mime_message_get_mime_part(message.get());
  EXPECT_EQ(mimeType(top), "multipart/mixed");
  const auto parts = children(top);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(mimeType(parts[0]), "multipart/alternative");
  EXPECT_EQ(mimeType(parts[1]), "application/pdf");
  EXPECT_STREQ(g_mime_part_get_filename(GMIME_PART(parts[1])), "report.pdf");
  EXPECT_STREQ(g_mime_object_get_disposition(parts[1]), "attachment");
  EXPECT_EQ(g_mime_part_get_content_encoding(GMIME_PART(parts[1])), GMIME_CONTENT_ENCODING_BASE64);
  EXPECT_EQ(decodedContent(parts[1]), pdf);
  EXPECT_EQ(mimeType(parts[2]), "text/csv");
  EXPECT_EQ(contentTypeParameter(parts[2], "charset"), "utf-8");
  EXPECT_EQ(decodedContent(parts[2]), csv);
}

TEST(ComposeJson, InlineImagesWithContentIdsAreRelatedToTheHtml) {
  json body = basic();
  body["html"] = "<img src=\"cid:logo\">";
  body["attachments"] = {
      {{"name", "logo.png"},
       {"content_type", "image/png"},
       {"content", base64("PNG")},
       {"disposition", "inline"},
       {"content_id", "logo"}},
      {{"name", "terms.pdf"}, {"content", base64("PDF")}},
  };
  const auto message = parseMessage(compose(body).data);
  GMimeObject* top = g_mime_message_get_mime_part(message.get());
  ASSERT_EQ(mimeType(top), "multipart/mixed");
  const auto mixed = children(top);
  ASSERT_EQ(mixed.size(), 2u);
  ASSERT_EQ(mimeType(mixed[0]), "multipart/alternative");
  EXPECT_EQ(mimeType(mixed[1]), "application/octet-stream");
  const auto alternative = children(mixed[0]);
  ASSERT_EQ(alternative.size(), 2u);
  EXPECT_EQ(mimeType(alternative[0]), "text/plain");
  ASSERT_EQ(mimeType(alternative[1]), "multipart/related");
  EXPECT_EQ(contentTypeParameter(alternative[1], "type"), "text/html");
  const auto related = children(alternative[1]);
  ASSERT_EQ(related.size(), 2u);
  EXPECT_EQ(mimeType(related[0]), "text/html");
  EXPECT_EQ(mimeType(related[1]), "image/png");
  EXPECT_STREQ(g_mime_object_get_content_id(related[1]), "logo");
  EXPECT_STREQ(g_mime_object_get_disposition(related[1]), "inline");
  EXPECT_EQ(decodedContent(related[1]), "PNG");
}

TEST(ComposeJson, HtmlOnlyWithAnInlineImageIsRelatedAlone) {
  json body = basic();
  body.erase("text");
  body["html"] = "<img src=\"cid:logo@acme.example\">";
  body["attachments"] = {{{"content_type", "image/gif"},
                          {"content", base64("GIF89a")},
                          {"disposition", "inline"},
                          {"content_id", "<logo@acme.example>"}}};
  const auto message = parseMessage(compose(body).data);
  GMimeObject* top = g_mime_message_get_mime_part(message.get());
  ASSERT_EQ(mimeType(top), "multipart/related");
  const auto related = children(top);
  ASSERT_EQ(related.size(), 2u);
  EXPECT_EQ(mimeType(related[0]), "text/html");
  EXPECT_STREQ(g_mime_object_get_content_id(related[1]), "logo@acme.example");
}

TEST(ComposeJson, AnInlinePartWithoutHtmlGoesIntoTheMixed) {
  json body = basic();
  body["attachments"] = {{{"name", "a.png"},
                          {"content_type", "image/png"},
                          {"content", base64("x")},
                          {"disposition", "inline"},
                          {"content_id", "a"}}};
  const auto message = parseMessage(compose(body).data);
  GMimeObject* top = g_mime_message_get_mime_part(message.get());
  ASSERT_EQ(mimeType(top), "multipart/mixed");
  const auto parts = children(top);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(mimeType(parts[0]), "text/plain");
  EXPECT_STREQ(g_mime_object_get_disposition(parts[1]), "inline");
}

TEST(ComposeJson, AttachmentsAloneAreAMixedOfAttachments) {
  json body = basic();
  body.erase("text");
  body["attachments"] = {{{"name", "a.bin"}, {"content", ""}}};
  const auto message = parseMessage(compose(body).data);
  GMimeObject* top = g_mime_message_get_mime_part(message.get());
  ASSERT_EQ(mimeType(top), "multipart/mixed");
  const auto parts = children(top);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(decodedContent(parts[0]), "");
}

// --- encodings ---------------------------------------------------------------------------------

TEST(ComposeJson, NonAsciiSubjectNamesAndFileNamesAreEncodedAndDecodeBack) {
  const std::string subject = "Gr\xc3\xbc\xc3\x9f"
                              "e aus K\xc3\xb6ln \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac";
  const std::string name = "J\xc3\xbcrgen M\xc3\xbcller, Jr.";
  const std::string file = "R\xc3\xa9sum\xc3\xa9 2024.pdf";
  json body = basic();
  body["subject"] = subject;
  body["to"] = {{{"name", name}, {"address", "juergen@example.com"}}};
  body["from"] = "=?utf-8?q?Ren=C3=A9?= <rep1@acme.example>";
  body["text"] = "Gr\xc3\xbc\xc3\x9f"
                 "e\n";
  body["attachments"] = {{{"name", file}, {"content", base64("%PDF")}}};
  const auto out = compose(body);
  EXPECT_FALSE(out.body_8bit) << "headers are encoded, bodies transfer-encoded";
  const std::string_view raw_header = rawHeader(out.data);
  EXPECT_NE(raw_header.find("=?UTF-8?"), std::string_view::npos) << raw_header;
  EXPECT_NE(out.data.find("filename*=UTF-8''R%C3%A9sum%C3%A9"), std::string::npos) << out.data;

  const auto message = parseMessage(out.data);
  EXPECT_STREQ(g_mime_message_get_subject(message.get()), subject.c_str());
  InternetAddress* to = internet_address_list_get_address(g_mime_message_get_to(message.get()), 0);
  EXPECT_STREQ(internet_address_get_name(to), name.c_str());
  InternetAddress* from =
      internet_address_list_get_address(g_mime_message_get_from(message.get()), 0);
  EXPECT_STREQ(internet_address_get_name(from), "Ren\xc3\xa9");
  const auto parts = children(g_mime_message_get_mime_part(message.get()));
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(decodedContent(parts[0]), "Gr\xc3\xbc\xc3\x9f"
                                      "e\r\n");
  EXPECT_STREQ(g_mime_part_get_filename(GMIME_PART(parts[1])), file.c_str());
}

TEST(ComposeJson, LongLinesAreFoldedOrEncodedNeverOver998) {
  std::string long_line(5000, 'x');
  json body = basic();
  body["text"] = "short\n" + long_line + "\nend";
  body["html"] = "<p>" + std::string(3000, 'y') + "</p>";
  body["subject"] = std::string(2000, 's') + " and " + std::string(1500, 't');
  std::string words;
  for (int i = 0; i < 300; ++i) {
    words += "word" + std::to_string(i) + " ";
  }
  body["headers"] = {{"X-Words", words}};
  const auto out = compose(body);
  EXPECT_LE(longestLine(out.data), 998u);
  const auto message = parseMessage(out.data);
  EXPECT_EQ(header(message.get(), "Subject"), body["subject"].get<std::string>());
  EXPECT_EQ(header(message.get(), "X-Words"), words.substr(0, words.size() - 1));
  const auto parts = children(g_mime_message_get_mime_part(message.get()));
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(decodedContent(parts[0]), "short\r\n" + long_line + "\r\nend");
  EXPECT_EQ(decodedContent(parts[1]), body["html"].get<std::string>());
}

TEST(ComposeJson, LineEndsOfTextBecomeCrlf) {
  json body = basic();
  body["text"] = "a\nb\r\nc\rd\n\n";
  const auto out = compose(body);
  const auto message = parseMessage(out.data);
  EXPECT_EQ(decodedContent(g_mime_message_get_mime_part(message.get())),
            "a\r\nb\r\nc\r\nd\r\n\r\n");
}

TEST(ComposeJson, MostlyNonAsciiTextIsCanonicalInsideBase64) {
  std::string text;
  for (int i = 0; i < 40; ++i) {
    text += "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\n";
  }
  json body = basic();
  body["text"] = text;
  const auto message = parseMessage(compose(body).data);
  GMimeObject* part = g_mime_message_get_mime_part(message.get());
  std::string expected;
  for (int i = 0; i < 40; ++i) {
    expected += "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\r\n";
  }
  EXPECT_EQ(decodedContent(part), expected);
}

// --- addresses and recipients ------------------------------------------------------------------

TEST(ComposeJson, BccIsInTheEnvelopeOnlyAndDuplicatesGoOnce) {
  json body = basic();
  body["to"] = {"Jane <jane@example.com>", {{"address", "bob@example.com"}}};
  body["cc"] = {"JANE@example.com", "carol@example.com"};
  body["bcc"] = {"secret@example.com", "Bob@Example.com"};
  const auto out = compose(body);
  EXPECT_EQ(out.recipients, (std::vector<std::string>{"jane@example.com", "bob@example.com",
                                                      "carol@example.com", "secret@example.com"}));
  EXPECT_EQ(out.data.find("secret@"), std::string::npos);
  const auto message = parseMessage(out.data);
  EXPECT_FALSE(hasHeader(message.get(), "Bcc"));
  EXPECT_EQ(internet_address_list_length(g_mime_message_get_to(message.get())), 2);
  EXPECT_EQ(internet_address_list_length(g_mime_message_get_cc(message.get())), 2);
}

TEST(ComposeJson, BccOnlyHasNoToField) {
  json body = basic();
  body.erase("to");
  body["bcc"] = "hidden@example.com";
  const auto out = compose(body);
  EXPECT_EQ(out.recipients, (std::vector<std::string>{"hidden@example.com"}));
  const auto names = headerNames(out.data);
  EXPECT_EQ(std::count(names.begin(), names.end(), "To"), 0);
  EXPECT_EQ(out.data.find("hidden"), std::string::npos);
}

TEST(ComposeJson, ReplyToIsWrittenAndIsNoRecipient) {
  json body = basic();
  body["reply_to"] = {"Desk <desk@acme.example>", "b@acme.example"};
  const auto out = compose(body);
  EXPECT_EQ(out.recipients.size(), 1u);
  const auto message = parseMessage(out.data);
  EXPECT_EQ(internet_address_list_length(g_mime_message_get_reply_to(message.get())), 2);
}

TEST(ComposeJson, InternationalAddresses) {
  json body = basic();
  body["to"] = {"J\xc3\xb6rg <j\xc3\xb6rg@example.com>", "ann@b\xc3\xbc"
                                                         "cher.example"};
  const auto out = compose(body);
  EXPECT_TRUE(out.smtputf8);
  EXPECT_TRUE(out.body_8bit); // the UTF-8 local part is in the To field
  EXPECT_EQ(out.recipients,
            (std::vector<std::string>{"j\xc3\xb6rg@example.com", "ann@xn--bcher-kva.example"}));

  json idn = basic();
  idn["to"] = "ann@b\xc3\xbc"
              "cher.example";
  const auto ascii = compose(idn);
  EXPECT_FALSE(ascii.smtputf8) << "an IDN domain has an ASCII form";
  EXPECT_FALSE(ascii.body_8bit);
  EXPECT_EQ(ascii.recipients, (std::vector<std::string>{"ann@xn--bcher-kva.example"}));
}

TEST(ComposeJson, QuotedLocalPartsAndDomainLiterals) {
  json body = basic();
  body["to"] = {{{"name", "He said \"hi\""}, {"address", "\"john doe\"@example.com"}},
                "ops@[192.0.2.1]"};
  const auto out = compose(body);
  EXPECT_EQ(out.recipients,
            (std::vector<std::string>{"\"john doe\"@example.com", "ops@[192.0.2.1]"}));
  const auto message = parseMessage(out.data);
  InternetAddress* first =
      internet_address_list_get_address(g_mime_message_get_to(message.get()), 0);
  EXPECT_STREQ(internet_address_get_name(first), "He said \"hi\"");
}

TEST(ComposeJson, RecipientLimitCountsDistinctAddresses) {
  ComposeContext ctx = context();
  ctx.limits.max_recipients = 3;
  json body = basic();
  body["to"] = {"a@example.com", "b@example.com", "A@EXAMPLE.COM"};
  body["bcc"] = {"c@example.com", "b@example.com"};
  EXPECT_EQ(compose(body, ctx).recipients.size(), 3u);
  body["cc"] = "d@example.com";
  const Error e = composeError(body, ctx);
  EXPECT_EQ(e.code, kTooManyRecipients);
  EXPECT_NE(e.message.find("more than 3 recipients"), std::string::npos) << e.message;
}

// Both paths agree: a composed message submitted raw is taken as it is, with the same sender
// and its visible recipients.
TEST(ComposeJson, ComposedMessagesPassPrepareRawUnchanged) {
  json eai = basic();
  eai["to"] = {"J\xc3\xb6rg <j\xc3\xb6rg@example.com>", "ann@b\xc3\xbc"
                                                        "cher.example"};
  eai["cc"] = "\"Doe, Jane\" <jane@example.com>";
  eai["bcc"] = "hidden@example.com";
  json rich = basic();
  rich["from"] = {{"name", "R\xc3\xa9p"},
                  {"address", "rep1@b\xc3\xbc"
                              "cher.example"}};
  rich["html"] = "<p>x</p>";
  rich["attachments"] = {{{"name", "a.bin"}, {"content", base64("abc")}}};
  rich["headers"] = {{"X-Campaign", "q4"}};
  for (const json& body : {basic(), eai, rich}) {
    const auto out = compose(body);
    const auto again = prepareRaw(out.data, context(), "");
    ASSERT_TRUE(again.has_value()) << again.error().describe();
    EXPECT_EQ(again->data, out.data);
    EXPECT_EQ(again->from, out.from);
    EXPECT_EQ(again->message_id, out.message_id);
    EXPECT_EQ(again->smtputf8, out.smtputf8);
    std::vector<std::string> visible = out.recipients;
    std::erase(visible, "hidden@example.com");
    EXPECT_EQ(again->recipients, visible);
  }
}

// --- other fields ------------------------------------------------------------------------------

TEST(ComposeJson, MessageIdsAreUniqueAndTheCallersIsKept) {
  std::set<std::string> ids;
  for (int i = 0; i < 200; ++i) {
    ids.insert(compose(basic()).message_id);
  }
  EXPECT_EQ(ids.size(), 200u);

  json body = basic();
  body["message_id"] = "<order-4711@acme.example>";
  auto out = compose(body);
  EXPECT_EQ(out.message_id, "<order-4711@acme.example>");
  EXPECT_EQ(header(parseMessage(out.data).get(), "Message-ID"), "<order-4711@acme.example>");
  body["message_id"] = "order-4712@acme.example";
  EXPECT_EQ(compose(body).message_id, "<order-4712@acme.example>");
}

// Re-entrant: no shared state but GMime's, which is initialised once.
TEST(ComposeJson, ThreadsComposeAtOnce) {
  json body = basic();
  body["to"] = {"J\xc3\xb6rg <j@example.com>", "b@example.com"};
  body["html"] = "<p>x</p>";
  body["attachments"] = {{{"name", "R\xc3\xa9sum\xc3\xa9.pdf"}, {"content", base64("abc")}}};
  const std::string text = body.dump();
  std::vector<std::vector<std::string>> ids(4);
  std::vector<std::thread> threads;
  for (auto& mine : ids) {
    threads.emplace_back([&text, &mine] {
      for (int i = 0; i < 50; ++i) {
        auto out = composeFromJson(text, context());
        auto raw = out ? prepareRaw(out->data, context(), "") : out;
        mine.push_back(raw ? raw->message_id : std::string());
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  std::set<std::string> distinct;
  for (const auto& mine : ids) {
    for (const auto& id : mine) {
      EXPECT_FALSE(id.empty());
      distinct.insert(id);
    }
  }
  EXPECT_EQ(distinct.size(), 200u);
}

TEST(ComposeJson, AnUnfitMessageIdDomainIsReplaced) {
  ComposeContext ctx = context();
  ctx.message_id_domain = "";
  EXPECT_TRUE(compose(basic(), ctx).message_id.ends_with("@mailgate.invalid>"));
  ctx.message_id_domain = "bad domain";
  EXPECT_TRUE(compose(basic(), ctx).message_id.ends_with("@mailgate.invalid>"));
}

TEST(ComposeJson, Priority) {
  json body = basic();
  EXPECT_EQ(compose(body).priority, "bulk");
  body["priority"] = "Personal";
  EXPECT_EQ(compose(body).priority, "personal");
  body["priority"] = nullptr;
  EXPECT_EQ(compose(body).priority, "bulk");
}

TEST(ComposeJson, CustomHeadersKeepTheirOrderAndLongUrlsStayWhole) {
  const std::string url = "<https://unsubscribe.example.com/u/" + std::string(150, 'a') + "?x=1>";
  json body = basic();
  // Written as a string so that the keys keep this order in the document.
  std::string text = body.dump();
  text.pop_back();
  text += ",\"headers\":{\"X-Campaign\":\"q4\",\"List-Unsubscribe\":" + json(url).dump() +
          ",\"List-Unsubscribe-Post\":\"List-Unsubscribe=One-Click\","
          "\"In-Reply-To\":\"<a@example.com>\",\"References\":\"<z@example.com> <a@example.com>\","
          "\"X-Caf\xc3\xa9-Free\":\"no\",\"X-Note\":\"caf\xc3\xa9 au lait\"}}";
  auto composed = composeFromJson(text, context());
  // A header name must be ASCII.
  ASSERT_FALSE(composed);
  EXPECT_EQ(composed.error().code, kInvalid);
  EXPECT_TRUE(composed.error().message.starts_with("headers[\"X-Caf?\?-Free\"]"))
      << composed.error().message;

  text.replace(text.find("X-Caf\xc3\xa9-Free"), std::string("X-Caf\xc3\xa9-Free").size(),
               "X-Aaa-Last");
  composed = composeFromJson(text, context());
  ASSERT_TRUE(composed) << composed.error().describe();
  const auto names = headerNames(composed->data);
  const std::vector<std::string> custom(names.begin() + 5, names.begin() + 12);
  EXPECT_EQ(custom,
            (std::vector<std::string>{"X-Campaign", "List-Unsubscribe", "List-Unsubscribe-Post",
                                      "In-Reply-To", "References", "X-Aaa-Last", "X-Note"}));
  EXPECT_NE(composed->data.find("List-Unsubscribe: " + url + "\r\n"), std::string::npos)
      << rawHeader(composed->data);
  const auto message = parseMessage(composed->data);
  EXPECT_EQ(header(message.get(), "X-Note"), "caf\xc3\xa9 au lait");
  EXPECT_EQ(header(message.get(), "References"), "<z@example.com> <a@example.com>");
  EXPECT_EQ(header(message.get(), "X-Campaign"), "q4");
}

TEST(ComposeJson, NullIsAbsent) {
  json body = basic();
  body["cc"] = nullptr;
  body["html"] = nullptr;
  body["attachments"] = nullptr;
  body["headers"] = nullptr;
  body["message_id"] = nullptr;
  body["subject"] = nullptr;
  const auto out = compose(body);
  EXPECT_EQ(mimeType(g_mime_message_get_mime_part(parseMessage(out.data).get())), "text/plain");
  const auto names = headerNames(out.data);
  EXPECT_EQ(std::count(names.begin(), names.end(), "Subject"), 0);
}

// --- errors: message.invalid_json --------------------------------------------------------------

TEST(ComposeJsonErrors, NotJsonOrNotAnObject) {
  for (const std::string_view text :
       {"", "{", "{\"from\": }", "not json", "{\"a\":1} trailing", "{\"text\": \"\xff\"}"}) {
    const Error e = composeError(text);
    EXPECT_EQ(e.code, kInvalidJson) << text;
    EXPECT_TRUE(e.message.starts_with("body: not JSON")) << e.message;
  }
  for (const std::string_view text : {"[]", "\"text\"", "42", "null"}) {
    const Error e = composeError(text);
    EXPECT_EQ(e.code, kInvalidJson) << text;
    EXPECT_EQ(e.message, "body: not a JSON object");
  }
}

TEST(ComposeJsonErrors, DuplicateKeys) {
  Error e = composeError(std::string_view(
      R"({"from":"a@example.com","to":"b@example.com","text":"x","to":"c@example.com"})"));
  EXPECT_EQ(e.code, kInvalidJson);
  EXPECT_EQ(e.message, "\"to\": appears twice in one object");
  e = composeError(std::string_view(
      R"({"from":"a@example.com","to":"b@example.com","text":"x","headers":{"X-A":"1","X-A":"2"}})"));
  EXPECT_EQ(e.code, kInvalidJson);
  e = composeError(std::string_view(
      R"({"from":"a@example.com","to":"b@example.com","attachments":[{"content":"","content":""}]})"));
  EXPECT_EQ(e.code, kInvalidJson);
}

TEST(ComposeJsonErrors, WrongTypes) {
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"to", 5}}, "to: expected"},
      {{{"to", {5}}}, "to[0]: expected"},
      {{{"from", true}}, "from: expected"},
      {{{"subject", 1}}, "subject: expected a string"},
      {{{"text", {"a"}}}, "text: expected a string"},
      {{{"attachments", json::object()}}, "attachments: expected an array"},
      {{{"attachments", {"x"}}}, "attachments[0]: expected an object"},
      {{{"attachments", {{{"content", 5}}}}}, "attachments[0].content: expected a string"},
      {{{"headers", {"X-A"}}}, "headers: expected an object"},
      {{{"headers", {{"X-A", 1}}}}, "headers[\"X-A\"]: expected a string"},
      {{{"priority", 1}}, "priority: expected a string"},
      {{{"message_id", 1}}, "message_id: expected a string"},
      {{{"to", {{{"address", 1}}}}}, "to[0].address: expected a string"},
  };
  for (const auto& [change, message] : cases) {
    json body = basic();
    body.update(change);
    expectError(body, kInvalidJson, message);
  }
}

TEST(ComposeJsonErrors, NestingDeeperThanTheShape) {
  json body = basic();
  body["attachments"] = {{{"name", {{"deep", {1}}}}}};
  expectError(body, kInvalidJson, "body: nested deeper");
  const std::string deep = std::string(1000000, '[') + std::string(1000000, ']');
  EXPECT_EQ(composeError(std::string_view(deep)).code, kInvalidJson);
}

// --- errors: message.invalid -------------------------------------------------------------------

TEST(ComposeJsonErrors, UnknownFieldsAreNamedWithTheClosestKnownName) {
  json body = basic();
  body["sbject"] = "typo";
  Error e = composeError(body);
  EXPECT_EQ(e.code, kInvalid);
  EXPECT_EQ(e.message, "\"sbject\": unknown field");
  EXPECT_TRUE(e.hint.starts_with("did you mean \"subject\"?")) << e.hint;

  body = basic();
  body["attachments"] = {{{"content", ""}, {"filename", "a.txt"}}};
  e = composeError(body);
  EXPECT_EQ(e.code, kInvalid);
  EXPECT_EQ(e.message, "attachments[0].\"filename\": unknown field");

  body = basic();
  body["to"] = {{{"address", "a@example.com"}, {"nmae", "A"}}};
  e = composeError(body);
  EXPECT_EQ(e.message, "to[0].\"nmae\": unknown field");
  EXPECT_TRUE(e.hint.starts_with("did you mean \"name\"?")) << e.hint;

  body = basic();
  body[std::string(5000, 'z')] = 1;
  e = composeError(body);
  EXPECT_EQ(e.code, kInvalid);
  EXPECT_LT(e.message.size(), 80u);
}

TEST(ComposeJsonErrors, FromMustBeOneGoodMailbox) {
  json body = basic();
  body.erase("from");
  expectError(body, kInvalid, "from: missing");
  body["from"] = "";
  expectError(body, kInvalid, "from: missing");
  body["from"] = {"a@example.com"};
  expectError(body, kInvalid, "from: is an array");
  body["from"] = "a@example.com, b@example.com";
  expectError(body, kInvalid, "from: holds 2 addresses");
  EXPECT_TRUE(composeError(body).hint.starts_with("the sender must be one mailbox"));
  body["from"] = "Sales: a@example.com;";
  expectError(body, kInvalid, "from: is a group");
  // A phrase without an address is text GMime would skip: the field is not an address list.
  body["from"] = "not an address";
  expectError(body, kInvalid, "from: \"not an address\" holds text that is not an address list");
  body["from"] = "Rep";
  expectError(body, kInvalid, "from: \"Rep\" is not an email address");
  body["from"] = {{"name", "Rep"}};
  expectError(body, kInvalid, "from.address: missing");
}

TEST(ComposeJsonErrors, BadAddressesAreNamedByTheirPath) {
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"to", {"a@example.com", {{"address", "not-an-address"}}}}},
       "to[1].address: \"not-an-address\" is not an email address"},
      {{{"to", {"a@example.com", {{"address", "a@b@example.com"}}}}}, "to[1].address:"},
      {{{"cc", "x@"}}, "cc: "},
      {{{"bcc", {"ok@example.com", "@example.com"}}}, "bcc[1]: "},
      {{{"to", "a..b@example.com"}}, "to: "},
      {{{"to", "a@-example.com"}}, "to: "},
      {{{"to", "a@exa_mple.com"}}, "to: "},
      {{{"to", std::string(65, 'l') + "@example.com"}}, "to: "},
      {{{"to", "a@" + std::string(64, 'd') + ".example"}}, "to: "},
      {{{"to", "a@b.example;c@d.example"}}, "to: "},
      {{{"reply_to", "nobody"}}, "reply_to: "},
      {{{"to", {{"address", "a b@example.com"}}}}, "to.address: "},
      {{{"to", {{"address", "a@xn--" + std::string(40, 'a') + ".example"}}}},
       "to.address: \"a@xn--aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"... is not an email address: the "
       "domain has an \"xn--\" label"},
      {{{"to", "a@xn--" + std::string(40, 'a') + ".example"}}, "to: "},
  };
  for (const auto& [change, message] : cases) {
    json body = basic();
    body.update(change);
    expectError(body, kInvalid, message);
  }
}

TEST(ComposeJsonErrors, NoRecipients) {
  json body = basic();
  body.erase("to");
  expectError(body, kInvalid, "to: no recipients");
  body["to"] = json::array();
  body["cc"] = json::array();
  expectError(body, kInvalid, "to: no recipients");
}

TEST(ComposeJsonErrors, NoBody) {
  json body = basic();
  body.erase("text");
  expectError(body, kInvalid, "text: the message has no body");
  body["attachments"] = json::array();
  expectError(body, kInvalid, "text: the message has no body");
}

TEST(ComposeJsonErrors, BadBase64) {
  json body = basic();
  body["attachments"] = {{{"name", "a"}, {"content", "aGVsbG8*"}}};
  Error e = composeError(body);
  EXPECT_EQ(e.code, kInvalid);
  EXPECT_EQ(e.message, "attachments[0].content: not base64 at offset 7");
  body["attachments"] = {{{"content", "aGVs"}}, {{"content", "a-_b"}}};
  e = composeError(body);
  EXPECT_EQ(e.message, "attachments[1].content: not base64 at offset 1");
  EXPECT_NE(e.hint.find("base64url"), std::string::npos);
  body["attachments"] = {{{"name", "a"}}};
  expectError(body, kInvalid, "attachments[0].content: missing");
}

TEST(ComposeJsonErrors, UnknownPriorityDispositionContentTypeAndIds) {
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"priority", "urgent"}}, "priority: \"urgent\" is not a priority"},
      {{{"attachments", {{{"content", ""}, {"disposition", "attached"}}}}},
       "attachments[0].disposition:"},
      {{{"attachments", {{{"content", ""}, {"content_type", "pdf"}}}}},
       "attachments[0].content_type: \"pdf\" is not a MIME type"},
      {{{"attachments", {{{"content", ""}, {"content_type", "multipart/mixed"}}}}},
       "attachments[0].content_type: multipart/* is not accepted"},
      {{{"attachments", {{{"content", ""}, {"content_type", "message/rfc822"}}}}},
       "attachments[0].content_type: message/* is not accepted"},
      {{{"attachments", {{{"content", ""}, {"content_type", "text/plain; charset"}}}}},
       "attachments[0].content_type:"},
      {{{"attachments", {{{"content", ""}, {"content_id", "a b"}}}}}, "attachments[0].content_id:"},
      {{{"attachments",
         {{{"content", ""}, {"content_id", "x"}}, {{"content", ""}, {"content_id", "X"}}}}},
       "attachments[1].content_id: \"X\" is used by attachments[0] too"},
      {{{"attachments", {{{"content", ""}, {"name", "  "}}}}}, "attachments[0].name: empty"},
      {{{"message_id", "no id"}}, "message_id: \"no id\" is not a message id"},
      {{{"message_id", "<" + std::string(300, 'a') + "@example.com>"}}, "message_id:"},
      {{{"headers", {{"In-Reply-To", "not an id"}}}}, "headers[\"In-Reply-To\"]: must hold"},
      {{{"headers", {{"References", ""}}}}, "headers[\"References\"]: must hold"},
      {{{"headers", {{"Bad Name", "x"}}}}, "headers[\"Bad Name\"]: not a header field name"},
      {{{"headers", {{"Bad:Name", "x"}}}}, "headers[\"Bad:Name\"]: not a header field name"},
      {{{"headers", {{"X-Long", std::string(1200, 'w')}}}}, "headers[\"X-Long\"]: holds a word"},
      {{{"subject", "tab\tok but bell \x07 is not"}}, "subject: holds a control character"},
      {{{"text", std::string("nul \0 here", 10)}}, "text: holds a NUL character"},
  };
  for (const auto& [change, message] : cases) {
    json body = basic();
    body.update(change);
    expectError(body, kInvalid, message);
  }
}

TEST(ComposeJsonErrors, ReservedHeaderNames) {
  for (const char* name :
       {"From", "sender", "TO", "Cc", "Bcc", "Reply-To", "Subject", "Date", "Message-Id",
        "MIME-Version", "Content-Type", "content-transfer-encoding", "Received", "Return-Path",
        "Resent-To", "X-Mailgate-Priority", "x-mailgate-tenant"}) {
    json body = basic();
    body["headers"] = {{name, "x"}};
    const Error e = composeError(body);
    EXPECT_EQ(e.code, kInvalid) << name;
    EXPECT_EQ(e.message, fmt::format("headers[\"{}\"]: reserved", name));
  }
}

// --- errors: message.header_injection ----------------------------------------------------------

TEST(ComposeJsonErrors, LineBreaksAndNulInEveryHeaderBoundField) {
  for (const std::string& bad : {std::string("a\r\nBcc: x@evil.example"), std::string("a\nb"),
                                 std::string("a\rb"), std::string("a\0b", 3)}) {
    const std::vector<std::pair<json, std::string>> cases = {
        {{{"subject", bad}}, "subject:"},
        {{{"from", "Rep" + bad + " <rep1@acme.example>"}}, "from:"},
        {{{"from", {{"name", bad}, {"address", "rep1@acme.example"}}}}, "from.name:"},
        {{{"to", {{{"name", "x"}, {"address", "a" + bad + "@example.com"}}}}}, "to[0].address:"},
        {{{"cc", {"ok@example.com", "x" + bad + "@example.com"}}}, "cc[1]:"},
        {{{"bcc", bad}}, "bcc:"},
        {{{"reply_to", {{"name", bad}, {"address", "r@example.com"}}}}, "reply_to.name:"},
        {{{"attachments", {{{"content", ""}, {"name", "f" + bad}}}}}, "attachments[0].name:"},
        {{{"attachments", {{{"content", ""}, {"content_type", "text/plain" + bad}}}}},
         "attachments[0].content_type:"},
        {{{"attachments", {{{"content", ""}, {"content_id", "id" + bad}}}}},
         "attachments[0].content_id:"},
        {{{"headers", {{"X-A", bad}}}}, "headers[\"X-A\"]:"},
        {{{"headers", {{"X-A" + bad, "v"}}}}, "headers[\"X-A"},
        {{{"message_id", "<a" + bad + "@example.com>"}}, "message_id:"},
    };
    for (const auto& [change, field] : cases) {
      json body = basic();
      body.update(change);
      const Error e = composeError(body);
      EXPECT_EQ(e.code, kHeaderInjection) << field << " " << e.describe();
      EXPECT_TRUE(e.message.starts_with(field)) << e.describe();
    }
  }
}

TEST(ComposeJsonErrors, EncodedWordsThatDecodeToLineBreaks) {
  json body = basic();
  body["to"] = "=?utf-8?q?a=0D=0ABcc=3A_x=40evil=2Eexample?= <jane@example.com>";
  expectError(body, kHeaderInjection, "to:");
}

// --- errors: sizes and counts ------------------------------------------------------------------

TEST(ComposeJsonErrors, TooLarge) {
  ComposeContext ctx = context();
  ctx.limits.max_message_bytes = 4000;
  json body = basic();
  body["attachments"] = {{{"content", base64(std::string(2900, 'x'))}}};
  Error e = composeError(body, ctx);
  EXPECT_EQ(e.code, kTooLarge) << e.describe();
  EXPECT_TRUE(e.message.starts_with("body: the finished message is")) << e.message;

  body["attachments"] = {{{"content", base64(std::string(4000, 'x'))}}};
  e = composeError(body, ctx);
  EXPECT_EQ(e.code, kTooLarge);
  EXPECT_TRUE(e.message.starts_with("body: text, html and attachments add up")) << e.message;

  e = composeError(std::string_view(std::string(8001, ' ')), ctx);
  EXPECT_EQ(e.code, kTooLarge);
  EXPECT_TRUE(e.message.starts_with("body: the JSON body is larger")) << e.message;

  body = basic();
  std::string words;
  while (words.size() < 300 * 1024) {
    words += "lorem ipsum ";
  }
  body["subject"] = words;
  e = composeError(body);
  EXPECT_EQ(e.code, kTooLarge);
  EXPECT_TRUE(e.message.starts_with("headers: ")) << e.message;
}

TEST(ComposeJsonErrors, TooManyAttachments) {
  ComposeContext ctx = context();
  ctx.limits.max_attachments = 2;
  json body = basic();
  body["attachments"] = {{{"content", ""}}, {{"content", ""}}};
  EXPECT_TRUE(composeFromJson(body.dump(), ctx));
  body["attachments"].push_back({{"content", ""}});
  const Error e = composeError(body, ctx);
  EXPECT_EQ(e.code, kTooManyAttachments);
  EXPECT_EQ(e.message, "attachments: 3 attachments; at most 2");
}

TEST(ComposeJsonErrors, EchoesAreShortAndSanitised) {
  json body = basic();
  body["to"] = std::string(900, 'x') + "\xc3\xa9";
  const Error e = composeError(body);
  EXPECT_EQ(e.code, kInvalid);
  EXPECT_LT(e.message.size(), 120u) << e.message;
}

TEST(HttpStatus, MapsEveryCode) {
  EXPECT_EQ(httpStatus(kInvalidJson), 400);
  EXPECT_EQ(httpStatus(kHeaderInjection), 400);
  EXPECT_EQ(httpStatus(kInvalid), 422);
  EXPECT_EQ(httpStatus(kTooManyRecipients), 422);
  EXPECT_EQ(httpStatus(kTooManyAttachments), 422);
  EXPECT_EQ(httpStatus(kTooLarge), 413);
  EXPECT_EQ(httpStatus(kInternal), 500);
  EXPECT_EQ(httpStatus("header.bad_from"), 500);
}

} // namespace
} // namespace mailgate::message
