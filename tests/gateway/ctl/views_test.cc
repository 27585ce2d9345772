#include "gateway/ctl/views.h"
#include "tests/gateway/ctl/fixtures.h"

#include <gtest/gtest.h>

namespace mailgate::ctl {
namespace {

using testing::fixture;

Json load(const std::string& name) {
  return Json::parse(fixture(name));
}

TEST(Views, StatusBlock) {
  auto out = renderStatus(load("status.json"));
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out, "node:        gw-1\n"
                  "version:     0.1.0\n"
                  "ready:       yes\n"
                  "started:     2026-12-03T08:00:00.000Z\n"
                  "uptime:      1d 2h 3m 4s\n"
                  "tenants:     2\n"
                  "mailboxes:   3\n"
                  "connections: smtp 4, api 1\n"
                  "queue:       queued 3, sending 1, deferred 2, sent 120, failed 1\n");
}

TEST(Views, StatusOfADrainingGatewayWithAScopedToken) {
  auto out = renderStatus(load("status_draining.json"));
  ASSERT_TRUE(out.has_value());
  EXPECT_NE(out->find("ready:       no (draining)\n"), std::string::npos) << *out;
  EXPECT_NE(out->find("uptime:      59s\n"), std::string::npos) << *out;
  EXPECT_NE(out->find("queue:       -\n"), std::string::npos) << *out;
}

TEST(Views, MailboxTable) {
  const Json page = load("mailboxes.json");
  auto out = renderMailboxTable(page["mailboxes"], {});
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out,
            "ADDRESS            TENANT  ROUTE         IMAP       USED/LIMIT  REMAINING  FREES_AT"
            "                  LAST_ERROR\n"
            "rep1@acme.example  acme    exhausted     connected  9950/10000  50         "
            "2026-12-04T09:12:00.000Z  554 5.2.0 "
            "STOREDRV.Submission.Exception:SubmissionQuotaExce\u2026\n"
            "rep2@acme.example  acme    unconfigured  off        0/-         -          -      "
            "                   -\n");
  EXPECT_EQ(*renderMailboxTable(Json::array(), {}), "no mailboxes\n");
  EXPECT_FALSE(renderMailboxTable(Json::object(), {}).has_value());
}

TEST(Views, MailboxBlock) {
  auto out = renderMailbox(load("mailbox.json"));
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out,
            "address:            rep1@acme.example\n"
            "tenant:             acme\n"
            "aliases:            sales@acme.example\n"
            "access:             imap\n"
            "auth:               app_password\n"
            "sync:               two_way\n"
            "route:              exhausted (failed over to the fallback relays)\n"
            "route until:        2026-12-04T09:12:00.000Z\n"
            "route reason:       554 5.2.0 "
            "STOREDRV.Submission.Exception:SubmissionQuotaExceededException\n"
            "route hint:         Microsoft 365 says the daily recipient quota is spent; mail goes "
            "through the fallback relays until it frees\n"
            "recipients:         9950 used of 10000, 50 remaining, window 86400s\n"
            "frees at:           2026-12-04T09:12:00.000Z\n"
            "personal reserve:   10%\n"
            "messages/minute:    30\n"
            "recipients/message: 500\n"
            "exhausted until:    2026-12-04T09:12:00.000Z\n"
            "smtp:               1 connections (0 busy, max 3), 4 waiting, 0 in flight\n"
            "imap:               connected: 2 of 3 sessions open (1 idle, 1 busy), 0 connecting, 0 "
            "jobs waiting\n"
            "imap sent folder:   Sent Items\n"
            "imap connected:     since 2026-12-03T08:00:05.000Z\n"
            "imap logins:        2 ok, 0 failed\n"
            "last error:         554 5.2.0 quota exceeded\n"
            "last error hint:    wait for the window to free\n"
            "last error time:    2026-12-03T09:12:00.000Z\n");
}

TEST(Views, MailboxBlockWithAManualFailoverAndNoError) {
  Json m = load("mailbox.json");
  m["route"] = {
      {"state", "failover"},     {"until", nullptr},
      {"reason", "maintenance"}, {"hint", nullptr},
      {"failed_over", true},     {"manual", {{"actor", "API token ops"}, {"since", "T"}}}};
  m["last_error"] = nullptr;
  auto out = renderMailbox(m);
  ASSERT_TRUE(out.has_value());
  EXPECT_NE(out->find("route:              failover (failed over to the fallback relays)\n"),
            std::string::npos);
  EXPECT_EQ(out->find("route until"), std::string::npos);
  EXPECT_NE(out->find("manual failover:    by API token ops since T\n"), std::string::npos);
  EXPECT_NE(out->find("last error:         none\n"), std::string::npos);
}

TEST(Views, MailboxBlockWithADisconnectedImapPool) {
  Json m = load("mailbox.json");
  m["imap"] = {{"state", "disconnected"},
               {"max_sessions", 3},
               {"sessions", {{"open", 0}, {"idle", 0}, {"busy", 0}, {"connecting", 0}}},
               {"jobs_waiting", 2},
               {"sent_folder", nullptr},
               {"last_error",
                {{"code", "imap.auth"},
                 {"message", "NO LOGIN failed."},
                 {"hint", "enable IMAP for the mailbox in the Microsoft 365 admin center"},
                 {"at", "2026-12-03T09:00:00.000Z"}}},
               {"next_retry_at", "2026-12-03T09:05:00.000Z"},
               {"connected_since", nullptr},
               {"logins", 0},
               {"failures", 4}};
  auto out = renderMailbox(m);
  ASSERT_TRUE(out.has_value());
  EXPECT_NE(out->find("imap:               disconnected: 0 of 3 sessions open (0 idle, 0 busy), 0 "
                      "connecting, 2 jobs waiting\n"
                      "imap sent folder:   -\n"
                      "imap last error:    imap.auth: NO LOGIN failed.\n"
                      "imap error hint:    enable IMAP for the mailbox in the Microsoft 365 admin "
                      "center\n"
                      "imap error time:    2026-12-03T09:00:00.000Z\n"
                      "imap next retry:    2026-12-03T09:05:00.000Z\n"
                      "imap logins:        0 ok, 4 failed\n"),
            std::string::npos)
      << *out;
  EXPECT_EQ(out->find("imap connected"), std::string::npos);
}

TEST(Views, MailboxBlockWithoutImapSaysOffOrNothing) {
  Json m = load("mailbox.json");
  m["imap"]["state"] = "off";
  auto off = renderMailbox(m);
  ASSERT_TRUE(off.has_value());
  EXPECT_NE(off->find("\nimap:               off\nlast error:"), std::string::npos) << *off;
  EXPECT_EQ(off->find("imap sent folder"), std::string::npos);
  m.erase("imap"); // an older server
  auto older = renderMailbox(m);
  ASSERT_TRUE(older.has_value());
  EXPECT_NE(older->find("\nimap:               -\nlast error:"), std::string::npos) << *older;
}

TEST(Views, QueueTableAndCounts) {
  const Json page = load("queue_page1.json");
  auto out = renderQueueTable(page["messages"], {});
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out, "ID           STATE     TENANT  MAILBOX            ROUTE         ATTEMPTS  "
                  "CREATED                   LAST_REPLY\n"
                  "01JEXAMPLE3  deferred  acme    rep1@acme.example  microsoft365  2         "
                  "2026-12-03T10:00:00.000Z  451 4.7.0 Temporary server error. Please try again "
                  "later. P\u2026\n"
                  "01JEXAMPLE2  queued    acme    rep1@acme.example  -             0         "
                  "2026-12-03T09:59:00.000Z  -\n");
  EXPECT_EQ(*renderQueueCounts(page["counts"]),
            "counts in scope: queued 1, sending 0, deferred 1, sent 1, failed 0\n");
  EXPECT_EQ(*renderQueueTable(Json::array(), {}), "no messages\n");
}

TEST(Views, QueueTableFitsTheTerminal) {
  const Json page = load("queue_page1.json");
  auto out = renderQueueTable(page["messages"], {.line_width = 120});
  ASSERT_TRUE(out.has_value());
  std::size_t start = 0;
  while (start < out->size()) {
    const std::size_t end = out->find('\n', start);
    EXPECT_LE(end - start, 120u + 2) << out->substr(start, end - start); // "…" is 3 bytes
    start = end + 1;
  }
  EXPECT_NE(out->find("  451 4.7.0 Temporary\u2026\n"), std::string::npos) << *out;
}

TEST(Views, MessageBlockWithRecipientsAndEvents) {
  auto out = renderMessage(load("message.json"), {});
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out, "id:           01JEXAMPLE\n"
                  "message-id:   <m1@acme.example>\n"
                  "state:        deferred\n"
                  "tenant:       acme\n"
                  "mailbox:      rep1@acme.example\n"
                  "from:         rep1@acme.example\n"
                  "priority:     bulk\n"
                  "route:        microsoft365 (pinned)\n"
                  "attempts:     2\n"
                  "size:         2210 bytes\n"
                  "created:      2026-12-03T10:00:00.000Z\n"
                  "next attempt: 2026-12-03T10:10:00.000Z\n"
                  "expires:      2026-12-08T10:00:00.000Z\n"
                  "last reply:   451 4.7.0 try later\n"
                  "writeback:    -\n"
                  "\n"
                  "RECIPIENT      STATUS   LAST_REPLY\n"
                  "p@example.com  pending  451 4.7.0 try later\n"
                  "q@example.com  sent     250 2.0.0 OK\n"
                  "\n"
                  "SEQ  TIME                      EVENT             DATA\n"
                  "41   2026-12-03T10:00:00.000Z  message.queued    "
                  "{\"message_id\":\"<m1@acme.example>\"}\n"
                  "42   2026-12-03T10:00:01.000Z  message.deferred  "
                  "{\"route\":\"microsoft365\",\"reply\":\"451 4.7.0 try later\"}\n");
}

TEST(Views, ReloadReport) {
  auto out = renderReload(load("reload_ok.json"));
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out, "status:           reloaded\n"
                  "file:             config/examples/local.yaml\n"
                  "applied:          log level and format, listeners.api.tokens\n"
                  "restart required: listeners.api.address\n");
  Json none = load("reload_ok.json");
  none["restart_required"] = Json::array();
  EXPECT_NE(renderReload(none)->find("restart required: nothing\n"), std::string::npos);
}

TEST(Views, AnswersOfTheWrongShapeAreNotUnderstood) {
  for (const Json& j : {Json::array(), Json("text"), Json(nullptr)}) {
    EXPECT_EQ(renderStatus(j).error().code, "ctl.answer");
    EXPECT_EQ(renderMailbox(j).error().code, "ctl.answer");
    EXPECT_EQ(renderMessage(j, {}).error().code, "ctl.answer");
    EXPECT_EQ(renderReload(j).error().code, "ctl.answer");
  }
  EXPECT_EQ(renderQueueTable(Json::object(), {}).error().code, "ctl.answer");
}

TEST(Views, MissingFieldsShowAsDashes) {
  auto out = renderMessage(Json{{"id", "01J"}}, {});
  ASSERT_TRUE(out.has_value());
  EXPECT_NE(out->find("state:        -\n"), std::string::npos) << *out;
  EXPECT_NE(out->find("size:         -\n"), std::string::npos) << *out;
}

TEST(Views, TextOfValuesAndUptime) {
  Json j = {{"s", "x"},           {"b", true},       {"n", 3},      {"a", {"p", "q"}},
            {"e", Json::array()}, {"o", {{"k", 1}}}, {"z", nullptr}};
  EXPECT_EQ(textOf(&j["s"]), "x");
  EXPECT_EQ(textOf(&j["b"]), "yes");
  EXPECT_EQ(textOf(&j["n"]), "3");
  EXPECT_EQ(textOf(&j["a"]), "p, q");
  EXPECT_EQ(textOf(&j["e"]), "-");
  EXPECT_EQ(textOf(&j["o"]), "{\"k\":1}");
  EXPECT_EQ(textOf(&j["z"]), "-");
  EXPECT_EQ(textOf(nullptr), "-");
  EXPECT_EQ(formatUptime(0), "0s");
  EXPECT_EQ(formatUptime(61), "1m 1s");
  EXPECT_EQ(formatUptime(3600), "1h 0m 0s");
  EXPECT_EQ(formatUptime(93784), "1d 2h 3m 4s");
}

} // namespace
} // namespace mailgate::ctl
