#include "relay/policy/message_headers.h"
#include "relay/policy/sender_directory.h"

#include <gtest/gtest.h>
#include <string>
#include <vector>

namespace mailgate::relay::policy {
namespace {

config::Mailbox mailbox(std::string address, std::vector<std::string> aliases = {}) {
  config::Mailbox m;
  m.address = std::move(address);
  m.aliases = std::move(aliases);
  return m;
}

// Two tenants; addresses written in mixed case as an operator might.
config::Config twoTenants() {
  config::Config c;
  config::Tenant acme;
  acme.id = "acme";
  acme.mailboxes.push_back(
      mailbox("rep1@acme.example", {"Sales@Acme.Example", "rep.one@acme.example"}));
  acme.mailboxes.push_back(mailbox("Rep2@ACME.example"));
  c.tenants.push_back(acme);
  config::Tenant beta;
  beta.id = "beta";
  beta.mailboxes.push_back(mailbox("boss@beta.example", {"ceo@beta.example"}));
  c.tenants.push_back(beta);
  return c;
}

const std::vector<std::string> kAll{"*"};

class SenderDirectoryTest : public ::testing::Test {
protected:
  config::Config config_ = twoTenants();
  SenderDirectory dir_{config_};

  const config::Mailbox& rep1() const { return config_.tenants[0].mailboxes[0]; }
  const config::Mailbox& rep2() const { return config_.tenants[0].mailboxes[1]; }
  const config::Mailbox& boss() const { return config_.tenants[1].mailboxes[0]; }

  std::string refusalText(std::string_view mail_from, const std::vector<std::string>& scope) {
    auto r = dir_.resolve(mail_from, scope);
    EXPECT_FALSE(r.has_value()) << mail_from;
    if (r) {
      return {};
    }
    EXPECT_EQ(r.error().code, 550);
    EXPECT_EQ(r.error().enhanced, "5.7.1");
    return r.error().text;
  }

  // From header addresses as scanHeaders reads them from a message.
  static std::vector<std::string> fromOf(std::string_view header_block) {
    const std::string message = std::string(header_block) + "\r\nbody\r\n";
    auto facts = scanHeaders(message);
    EXPECT_TRUE(facts.has_value()) << (facts ? "" : facts.error().describe());
    return facts ? facts->from : std::vector<std::string>{};
  }
};

TEST_F(SenderDirectoryTest, FindsPrimaryAddressesAndAliasesInAnyCase) {
  ASSERT_FALSE(dir_.empty());
  const MailboxRef* primary = dir_.find("rep1@acme.example");
  ASSERT_NE(primary, nullptr);
  EXPECT_EQ(primary->mailbox, &rep1());
  EXPECT_EQ(primary->tenant, &config_.tenants[0]);
  EXPECT_FALSE(primary->via_alias);

  for (const char* variant : {"REP1@ACME.EXAMPLE", "Rep1@Acme.Example", "rEp1@acme.EXAMPLE"}) {
    const MailboxRef* ref = dir_.find(variant);
    ASSERT_NE(ref, nullptr) << variant;
    EXPECT_EQ(ref->mailbox, &rep1()) << variant;
  }
  // Configured in mixed case, asked in lower case, and the other way round.
  ASSERT_NE(dir_.find("sales@acme.example"), nullptr);
  EXPECT_TRUE(dir_.find("sales@acme.example")->via_alias);
  EXPECT_EQ(dir_.find("sales@acme.example")->mailbox, &rep1());
  ASSERT_NE(dir_.find("rep2@acme.example"), nullptr);
  EXPECT_EQ(dir_.find("rep2@acme.example")->mailbox, &rep2());
  ASSERT_NE(dir_.find("CEO@beta.example"), nullptr);
  EXPECT_EQ(dir_.find("CEO@beta.example")->mailbox, &boss());
  EXPECT_EQ(dir_.find("CEO@beta.example")->tenant, &config_.tenants[1]);
}

TEST_F(SenderDirectoryTest, FindsNothingForNearMisses) {
  for (const char* miss :
       {"", "rep1", "rep1@acme.exampl", "rep1@acme.example.", " rep1@acme.example",
        "<rep1@acme.example>", "rep3@acme.example", "rep1@beta.example"}) {
    EXPECT_EQ(dir_.find(miss), nullptr) << miss;
  }
}

TEST_F(SenderDirectoryTest, EmptyWithoutMailboxes) {
  config::Config none;
  EXPECT_TRUE(SenderDirectory(none).empty());
  config::Tenant t;
  t.id = "empty";
  none.tenants.push_back(t);
  EXPECT_TRUE(SenderDirectory(none).empty());
}

TEST_F(SenderDirectoryTest, ResolvesEveryTenantForTheStarScope) {
  auto r = dir_.resolve("Rep1@ACME.example", kAll);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->mailbox, &rep1());
  EXPECT_FALSE(r->via_alias);

  auto alias = dir_.resolve("ceo@beta.example", kAll);
  ASSERT_TRUE(alias.has_value());
  EXPECT_EQ(alias->mailbox, &boss());
  EXPECT_TRUE(alias->via_alias);

  // The bracketed reverse-path form is accepted as well.
  auto bracketed = dir_.resolve("<sales@acme.example>", kAll);
  ASSERT_TRUE(bracketed.has_value());
  EXPECT_EQ(bracketed->mailbox, &rep1());
}

TEST_F(SenderDirectoryTest, ResolvesWithinAnExplicitScope) {
  ASSERT_TRUE(dir_.resolve("rep2@acme.example", {"acme"}).has_value());
  ASSERT_TRUE(dir_.resolve("boss@beta.example", {"acme", "beta"}).has_value());
}

TEST_F(SenderDirectoryTest, RefusesTheNullSender) {
  EXPECT_EQ(refusalText("", kAll),
            "the null sender <> cannot submit mail; use the mailbox's address");
  EXPECT_EQ(refusalText("<>", {"acme"}),
            "the null sender <> cannot submit mail; use the mailbox's address");
}

TEST_F(SenderDirectoryTest, RefusesAnUnknownAddress) {
  EXPECT_EQ(refusalText("nobody@acme.example", kAll),
            "sender <nobody@acme.example> is not a configured mailbox or alias");
  EXPECT_EQ(refusalText("nobody@acme.example", {"acme"}),
            "sender <nobody@acme.example> is not a mailbox or alias of tenant acme");
  EXPECT_EQ(refusalText("nobody@acme.example", {"acme", "beta"}),
            "sender <nobody@acme.example> is not a mailbox or alias of tenants acme, beta");
  EXPECT_EQ(refusalText("nobody@acme.example", {}),
            "sender <nobody@acme.example> is not a mailbox or alias of any tenant this client "
            "may send for");
}

TEST_F(SenderDirectoryTest, RefusesAnotherTenantsMailboxWithoutNamingThatTenant) {
  // Scoped to a tenant that does not hold the address (and does not even exist).
  EXPECT_EQ(refusalText("rep1@acme.example", {"other"}),
            "sender <rep1@acme.example> is not a mailbox or alias of tenant other");
  const std::string foreign = refusalText("Boss@beta.example", {"acme"});
  EXPECT_EQ(foreign, "sender <Boss@beta.example> is not a mailbox or alias of tenant acme");
  // The same words as for an address no tenant has: the refusal says nothing about other tenants.
  const std::string unknown = refusalText("nobody@beta.example", {"acme"});
  EXPECT_EQ(unknown, "sender <nobody@beta.example> is not a mailbox or alias of tenant acme");
}

TEST_F(SenderDirectoryTest, ListsALargeScopeBriefly) {
  const std::vector<std::string> scope{"t1", "t2", "t3", "t4", "t5", "t6", "t7"};
  EXPECT_EQ(refusalText("rep1@acme.example", scope),
            "sender <rep1@acme.example> is not a mailbox or alias of tenants t1, t2, t3, t4, t5 "
            "and 2 more");
}

TEST_F(SenderDirectoryTest, SanitisesEchoedAddresses) {
  const std::string text = refusalText("evil\r\n250 ok\x01\xff@acme.example", kAll);
  EXPECT_EQ(text, "sender <evil??250 ok??@acme.example> is not a configured mailbox or alias");

  const std::string long_address = std::string(1000, 'a') + "@acme.example";
  const std::string shortened = refusalText(long_address, {"acme"});
  EXPECT_LT(shortened.size(), 300u);
  EXPECT_NE(shortened.find("aaa...>"), std::string::npos);
  for (const char c : shortened) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7f);
  }
}

TEST_F(SenderDirectoryTest, CheckFromAcceptsTheResolvedMailboxInEveryForm) {
  auto resolved = dir_.resolve("rep1@acme.example", kAll);
  ASSERT_TRUE(resolved.has_value());
  for (const char* header : {
           "From: rep1@acme.example\r\n",
           "From: Rep One <rep1@acme.example>\r\n",
           "From: \"One, Rep\" <REP1@acme.EXAMPLE>\r\n",
           "From: =?UTF-8?B?UsOpcCBPbmU=?= <rep1@acme.example>\r\n",
           "From: =?iso-8859-1?q?R=E9p?= <Sales@acme.example>\r\n",
           "From: Sales Team: rep1@acme.example, sales@acme.example;\r\n",
           "From: rep.one@acme.example (Rep One, rep2@acme.example)\r\n",
           "From: Rep One\r\n <rep1@acme.example>\r\n",
       }) {
    const auto from = fromOf(header);
    ASSERT_FALSE(from.empty()) << header;
    EXPECT_TRUE(dir_.checkFrom(*resolved, from).has_value()) << header;
  }
}

TEST_F(SenderDirectoryTest, CheckFromAcceptsAnAliasEnvelopeWithThePrimaryFrom) {
  auto resolved = dir_.resolve("sales@acme.example", kAll);
  ASSERT_TRUE(resolved.has_value());
  EXPECT_TRUE(dir_.checkFrom(*resolved, fromOf("From: <rep1@acme.example>\r\n")).has_value());
}

TEST_F(SenderDirectoryTest, CheckFromRefusesAnotherMailbox) {
  auto resolved = dir_.resolve("rep1@acme.example", kAll);
  ASSERT_TRUE(resolved.has_value());
  auto same_tenant = dir_.checkFrom(*resolved, fromOf("From: Rep Two <rep2@acme.example>\r\n"));
  ASSERT_FALSE(same_tenant.has_value());
  EXPECT_EQ(same_tenant.error().code, 550);
  EXPECT_EQ(same_tenant.error().enhanced, "5.7.1");
  EXPECT_EQ(same_tenant.error().text, "From <rep2@acme.example> is not mailbox <rep1@acme.example> "
                                      "or one of its aliases (tenant acme)");

  auto other_tenant = dir_.checkFrom(*resolved, fromOf("From: ceo@beta.example\r\n"));
  ASSERT_FALSE(other_tenant.has_value());
  EXPECT_EQ(other_tenant.error().text, "From <ceo@beta.example> is not mailbox "
                                       "<rep1@acme.example> or one of its aliases (tenant acme)");

  auto unknown = dir_.checkFrom(*resolved, fromOf("From: a@b.example, rep1@acme.example\r\n"));
  ASSERT_FALSE(unknown.has_value());
  EXPECT_NE(unknown.error().text.find("From <a@b.example>"), std::string::npos);

  // One foreign member in a group is enough.
  auto group =
      dir_.checkFrom(*resolved, fromOf("From: team: rep1@acme.example, boss@beta.example;\r\n"));
  ASSERT_FALSE(group.has_value());
  EXPECT_NE(group.error().text.find("From <boss@beta.example>"), std::string::npos);
}

TEST_F(SenderDirectoryTest, CheckFromRefusesAMissingFrom) {
  auto resolved = dir_.resolve("Sales@acme.example", kAll);
  ASSERT_TRUE(resolved.has_value());
  auto facts = scanHeaders("Subject: no sender\r\n\r\nFrom: rep1@acme.example\r\n");
  ASSERT_TRUE(facts.has_value());
  EXPECT_FALSE(facts->from_present);
  auto r = dir_.checkFrom(*resolved, facts->from);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().text, "the From header is missing; it must name <rep1@acme.example>");
}

TEST_F(SenderDirectoryTest, CheckFromSeesEveryFromField) {
  auto resolved = dir_.resolve("rep1@acme.example", kAll);
  ASSERT_TRUE(resolved.has_value());
  auto facts = scanHeaders("From: rep1@acme.example\r\nSubject: x\r\n"
                           "From: boss@beta.example\r\n\r\nbody\r\n");
  ASSERT_TRUE(facts.has_value());
  EXPECT_TRUE(facts->from_repeated);
  auto r = dir_.checkFrom(*resolved, facts->from);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().text.find("From <boss@beta.example>"), std::string::npos);

  // Both fields naming the mailbox pass checkFrom; from_repeated is the caller's to refuse.
  auto twice = scanHeaders("From: rep1@acme.example\r\nFrom: sales@acme.example\r\n\r\n");
  ASSERT_TRUE(twice.has_value());
  EXPECT_TRUE(twice->from_repeated);
  EXPECT_TRUE(dir_.checkFrom(*resolved, twice->from).has_value());
}

// checkFrom compares what scanHeaders found. GMime alone read each of these as
// rep1@acme.example, which checkFrom accepts for rep1; scanHeaders now refuses them, so the
// submission session answers 554 5.6.0 before checkFrom is asked.
TEST_F(SenderDirectoryTest, CheckFromIsNeverGivenAPartialReading) {
  auto resolved = dir_.resolve("rep1@acme.example", kAll);
  ASSERT_TRUE(resolved.has_value());
  ASSERT_TRUE(dir_.checkFrom(*resolved, {"rep1@acme.example"}).has_value());
  for (const char* header : {
           "From: rep1@acme.example\x7f.evil.example\r\n",
           "From: rep1@acme.example\x01.evil.example\r\n",
           "From: rep1@acme.example.\r\n",
           "From: rep1@acme.example>\r\n",
           "From: rep1@acme.example;boss@beta.example\r\n",
           "From: Boss at Beta, rep1@acme.example\r\n",
       }) {
    auto facts = scanHeaders(std::string(header) + "\r\nbody\r\n");
    ASSERT_FALSE(facts.has_value()) << header;
    EXPECT_EQ(facts.error().code, "header.bad_from") << header;
  }
}

TEST_F(SenderDirectoryTest, CheckFromRefusesAnUnresolvedSender) {
  EXPECT_FALSE(dir_.checkFrom(MailboxRef{}, {"rep1@acme.example"}).has_value());
}

TEST_F(SenderDirectoryTest, CheckFromSanitisesTheEchoedAddress) {
  auto resolved = dir_.resolve("rep1@acme.example", kAll);
  ASSERT_TRUE(resolved.has_value());
  auto r = dir_.checkFrom(*resolved, {"x\r\n550 y@z.example"});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().text, "From <x??550 y@z.example> is not mailbox <rep1@acme.example> or one "
                            "of its aliases (tenant acme)");
}

} // namespace
} // namespace mailgate::relay::policy
