#include "gateway/ctl/cli_args.h"

#include <gtest/gtest.h>
#include <vector>

namespace mailgate::ctl {
namespace {

Result<CtlArgs> parse(std::vector<std::string> args) {
  return parseArgs(args);
}

std::string usageMessage(std::vector<std::string> args) {
  auto r = parse(std::move(args));
  if (r.has_value()) {
    return "(parsed)";
  }
  EXPECT_EQ(r.error().code, "ctl.usage");
  EXPECT_FALSE(r.error().hint.empty());
  return r.error().message;
}

TEST(CliArgs, EveryCommandWithItsOperand) {
  const std::vector<std::pair<std::vector<std::string>, Command>> cases{
      {{"status"}, Command::kStatus},
      {{"mailboxes"}, Command::kMailboxes},
      {{"mailbox", "rep1@acme.example"}, Command::kMailbox},
      {{"queue"}, Command::kQueue},
      {{"message", "01JX"}, Command::kMessage},
      {{"failover", "rep1@acme.example"}, Command::kFailover},
      {{"failback", "rep1@acme.example"}, Command::kFailback},
      {{"retry", "01JX"}, Command::kRetry},
      {{"cancel", "01JX"}, Command::kCancel},
      {{"reload"}, Command::kReload},
      {{"help"}, Command::kHelp},
      {{"--help"}, Command::kHelp},
      {{"-h"}, Command::kHelp},
      {{"--version"}, Command::kVersion},
  };
  for (const auto& [args, command] : cases) {
    auto r = parse(args);
    ASSERT_TRUE(r.has_value()) << args[0] << ": " << r.error().message;
    EXPECT_EQ(r->command, command) << args[0];
    EXPECT_EQ(r->target, args.size() > 1 && args[0] != "help" ? args[1] : "") << args[0];
  }
}

TEST(CliArgs, DefaultsAreTheDocumentedOnes) {
  auto r = parse({"status"});
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->url.has_value());
  EXPECT_FALSE(r->token_file.has_value());
  EXPECT_FALSE(r->cacert.has_value());
  EXPECT_EQ(r->timeout, std::chrono::seconds(10));
  EXPECT_FALSE(r->json);
  EXPECT_FALSE(r->http2);
  EXPECT_FALSE(r->limit.has_value());
  EXPECT_FALSE(r->all);
}

TEST(CliArgs, GlobalOptionsBeforeOrAfterTheCommandInBothForms) {
  auto r = parse({"--url", "https://gw.example:8025", "status", "--json", "--token-file=/run/t",
                  "--cacert", "/etc/ca.pem", "--timeout=2.5", "--http2"});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->command, Command::kStatus);
  EXPECT_EQ(r->url, "https://gw.example:8025");
  EXPECT_EQ(r->token_file, "/run/t");
  EXPECT_EQ(r->cacert, "/etc/ca.pem");
  EXPECT_EQ(r->timeout, std::chrono::milliseconds(2500));
  EXPECT_TRUE(r->json);
  EXPECT_TRUE(r->http2);
}

TEST(CliArgs, QueueFilters) {
  auto r = parse({"queue", "--state", "deferred", "--tenant=acme", "--mailbox", "rep1@acme.example",
                  "--route", "microsoft365", "--limit", "200"});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->state, "deferred");
  EXPECT_EQ(r->tenant, "acme");
  EXPECT_EQ(r->mailbox, "rep1@acme.example");
  EXPECT_EQ(r->route, "microsoft365");
  EXPECT_EQ(r->limit, 200);
  r = parse({"queue", "--all"});
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->all);
  for (const char* s : {"queued", "sending", "deferred", "sent", "failed"}) {
    EXPECT_TRUE(parse({"queue", "--state", s}).has_value()) << s;
  }
}

TEST(CliArgs, FailoverReasonAndMailboxesTenant) {
  auto r = parse({"failover", "rep1@acme.example", "--reason", "--planned maintenance"});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->target, "rep1@acme.example");
  EXPECT_EQ(r->reason, "--planned maintenance");
  r = parse({"mailboxes", "--tenant", "acme"});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->tenant, "acme");
}

TEST(CliArgs, DoubleDashEndsOptions) {
  auto r = parse({"message", "--", "--odd-id"});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->target, "--odd-id");
}

TEST(CliArgs, HelpAndVersionWinOverEverythingElse) {
  EXPECT_EQ(parse({"queue", "--bogus", "--help"})->command, Command::kHelp);
  EXPECT_EQ(parse({"--token", "x", "--version"})->command, Command::kVersion);
  EXPECT_EQ(parse({"help", "queue"})->command, Command::kHelp);
}

TEST(CliArgs, TheTokenIsNeverTakenAsAnArgument) {
  for (std::vector<std::string> args : {std::vector<std::string>{"--token", "abc", "status"},
                                        {"status", "--token=abc"},
                                        {"--token"}}) {
    auto r = parse(args);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, "ctl.usage");
    EXPECT_NE(r.error().message.find("never"), std::string::npos);
    EXPECT_NE(r.error().hint.find("MAILGATE_TOKEN"), std::string::npos);
    EXPECT_EQ(r.error().message.find("abc"), std::string::npos);
    EXPECT_EQ(r.error().hint.find("abc"), std::string::npos);
  }
}

TEST(CliArgs, UsageErrorsSayWhatIsWrong) {
  EXPECT_EQ(usageMessage({}), "no command given");
  EXPECT_EQ(usageMessage({"stats"}), "unknown command stats");
  EXPECT_EQ(usageMessage({"status", "--bogus"}), "unknown option --bogus");
  EXPECT_EQ(usageMessage({"status", "-x"}), "unknown option -x");
  EXPECT_EQ(usageMessage({"status", "--url"}), "--url needs a value");
  EXPECT_EQ(usageMessage({"status", "--url="}), "--url needs a non-empty value");
  EXPECT_EQ(usageMessage({"status", "--json=yes"}), "--json takes no value");
  EXPECT_EQ(usageMessage({"mailbox"}), "mailbox needs ADDRESS");
  EXPECT_EQ(usageMessage({"message"}), "message needs ID");
  EXPECT_EQ(usageMessage({"retry", "a", "b"}), "retry takes one ID, not b");
  EXPECT_EQ(usageMessage({"status", "now"}), "status takes no argument, not now");
  EXPECT_EQ(usageMessage({"status", "--tenant", "acme"}), "status does not take --tenant");
  EXPECT_EQ(usageMessage({"mailbox", "a@b", "--reason", "x"}), "mailbox does not take --reason");
  EXPECT_EQ(usageMessage({"failback", "a@b", "--reason", "x"}), "failback does not take --reason");
  EXPECT_EQ(usageMessage({"mailboxes", "--state", "sent"}), "mailboxes does not take --state");
  EXPECT_EQ(usageMessage({"queue", "--state", "lost"}), "--state lost is not a message state");
  EXPECT_EQ(usageMessage({"queue", "--limit", "0"}),
            "--limit 0 is not a whole number from 1 to 1000000");
  EXPECT_EQ(usageMessage({"queue", "--limit", "ten"}),
            "--limit ten is not a whole number from 1 to 1000000");
  EXPECT_EQ(usageMessage({"queue", "--limit", "5", "--all"}),
            "queue takes --limit N or --all, not both");
  EXPECT_EQ(usageMessage({"queue", "--tenant", "a", "--tenant", "b"}), "--tenant is given twice");
  EXPECT_EQ(usageMessage({"status", "--timeout", "0"}),
            "--timeout 0 is not a number of seconds above 0 and up to 86400");
  EXPECT_EQ(usageMessage({"status", "--timeout", "-1"}),
            "--timeout -1 is not a number of seconds above 0 and up to 86400");
  EXPECT_EQ(usageMessage({"status", "--timeout", "soon"}),
            "--timeout soon is not a number of seconds above 0 and up to 86400");
  EXPECT_EQ(usageMessage({"status", "--timeout", "inf"}),
            "--timeout inf is not a number of seconds above 0 and up to 86400");
}

TEST(CliArgs, HelpDocumentsCommandsOptionsTokenSourcesAndEveryExitCode) {
  const std::string help = helpText();
  for (const char* word : {"status",
                           "mailboxes",
                           "mailbox ADDRESS",
                           "queue",
                           "--state",
                           "--all",
                           "message ID",
                           "failover ADDRESS",
                           "--reason",
                           "failback ADDRESS",
                           "retry ID",
                           "cancel ID",
                           "reload",
                           "--url",
                           "--token-file",
                           "--cacert",
                           "--timeout",
                           "--json",
                           "--http2",
                           "MAILGATE_URL",
                           "MAILGATE_TOKEN",
                           "MAILGATE_TOKEN_FILE",
                           "http://127.0.0.1:8025"}) {
    EXPECT_NE(help.find(word), std::string::npos) << word;
  }
  for (int code = 0; code <= 8; ++code) {
    EXPECT_NE(help.find("\n  " + std::to_string(code) + "  "), std::string::npos) << code;
  }
}

TEST(CliArgs, CommandNames) {
  EXPECT_EQ(commandName(Command::kQueue), "queue");
  EXPECT_EQ(commandName(Command::kCancel), "cancel");
  EXPECT_EQ(commandName(Command::kHelp), "help");
}

} // namespace
} // namespace mailgate::ctl
