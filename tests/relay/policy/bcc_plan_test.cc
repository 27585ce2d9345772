#include "relay/policy/bcc_plan.h"

#include <gtest/gtest.h>
#include <string>
#include <vector>

namespace mailgate::relay::policy {
namespace {

config::Config twoTenants() {
  config::Config c;
  config::Tenant acme;
  acme.id = "acme";
  acme.bcc_address = "Acme-BCC@mailgate.local";
  config::Mailbox rep;
  rep.address = "rep1@acme.example";
  rep.aliases = {"sales@acme.example"};
  acme.mailboxes.push_back(rep);
  c.tenants.push_back(acme);
  config::Tenant beta;
  beta.id = "beta";
  beta.bcc_address = "beta-bcc@mailgate.local";
  config::Mailbox boss;
  boss.address = "boss@beta.example";
  beta.mailboxes.push_back(boss);
  c.tenants.push_back(beta);
  return c;
}

class BccPlanTest : public ::testing::Test {
protected:
  config::Config config_ = twoTenants();
  SenderDirectory dir_{config_};
};

TEST_F(BccPlanTest, WithoutBccAddressesEveryRecipientIsRelayed) {
  config::Config c = twoTenants();
  for (auto& t : c.tenants) {
    t.bcc_address.clear();
  }
  SenderDirectory dir(c);
  auto plan = planBcc(c, dir, {"a@x.example", "acme-bcc@mailgate.local"}, "rep1@acme.example");
  EXPECT_FALSE(plan.any());
  EXPECT_EQ(plan.relay, (std::vector<std::string>{"a@x.example", "acme-bcc@mailgate.local"}));
}

TEST_F(BccPlanTest, TheBccAddressOfTheSendersTenantBecomesACopyOfItsMailbox) {
  // Matched case-insensitively, the sender through an alias; the copy names the primary address.
  auto plan = planBcc(config_, dir_, {"a@x.example", "ACME-bcc@MAILGATE.local", "b@x.example"},
                      "Sales@Acme.Example");
  ASSERT_TRUE(plan.any());
  EXPECT_FALSE(plan.refused());
  EXPECT_EQ(plan.relay, (std::vector<std::string>{"a@x.example", "b@x.example"}));
  ASSERT_EQ(plan.copies.size(), 1U);
  EXPECT_EQ(plan.copies[0].tenant, "acme");
  EXPECT_EQ(plan.copies[0].mailbox, "rep1@acme.example");
  EXPECT_EQ(plan.copies[0].address, "ACME-bcc@MAILGATE.local");
  EXPECT_TRUE(plan.skipped.empty());
}

TEST_F(BccPlanTest, TheSameBccAddressTwiceMakesOneCopy) {
  auto plan = planBcc(config_, dir_, {"acme-bcc@mailgate.local", "Acme-BCC@mailgate.local"},
                      "rep1@acme.example");
  EXPECT_TRUE(plan.relay.empty());
  EXPECT_EQ(plan.copies.size(), 1U);
  EXPECT_FALSE(plan.refused());
}

TEST_F(BccPlanTest, ABccAddressOfAnotherTenantIsSkipped) {
  auto plan =
      planBcc(config_, dir_, {"beta-bcc@mailgate.local", "a@x.example"}, "rep1@acme.example");
  EXPECT_TRUE(plan.copies.empty());
  ASSERT_EQ(plan.skipped.size(), 1U);
  EXPECT_EQ(plan.skipped[0].tenant, "beta");
  EXPECT_EQ(plan.relay, (std::vector<std::string>{"a@x.example"}));
  EXPECT_FALSE(plan.refused()); // the other recipient is still relayed
}

TEST_F(BccPlanTest, OnlySkippedBccAddressesRefuseTheMessage) {
  auto plan = planBcc(config_, dir_, {"beta-bcc@mailgate.local"}, "stranger@else.example");
  EXPECT_TRUE(plan.any());
  EXPECT_TRUE(plan.refused());
  // One copy and one skip: the copy is enough to accept.
  auto mixed = planBcc(config_, dir_, {"beta-bcc@mailgate.local", "acme-bcc@mailgate.local"},
                       "rep1@acme.example");
  EXPECT_FALSE(mixed.refused());
  EXPECT_EQ(mixed.copies.size(), 1U);
  EXPECT_EQ(mixed.skipped.size(), 1U);
}

TEST(BccRefusalText, NamesSenderAndTenantInPrintableAscii) {
  EXPECT_EQ(bccRefusalText("x@acme.example", "beta"),
            "BCC ingestion: sender <x@acme.example> is not a mailbox of tenant beta");
  const std::string text = bccRefusalText("x\r\n250 ok@a.example", "b\x80");
  EXPECT_EQ(text.find_first_of("\r\n\x80"), std::string::npos);
}

} // namespace
} // namespace mailgate::relay::policy
