#include "gateway/auth/api_auth.h"

#include <gtest/gtest.h>

namespace mailgate::api {
namespace {

using config::ApiToken;
using config::Role;

ApiToken token(std::string name, std::string secret, std::vector<Role> roles,
               std::vector<std::string> tenants = {"*"}) {
  ApiToken t;
  t.name = std::move(name);
  t.secret = Secret(std::move(secret));
  t.roles = std::move(roles);
  t.tenants = std::move(tenants);
  return t;
}

class ApiAuth : public ::testing::Test {
protected:
  std::vector<ApiToken> tokens{
      token("ops", "ops-secret-1", {Role::kAdmin}),
      token("crm", "crm-secret-22", {Role::kSubmitter, Role::kConnector, Role::kReader}, {"acme"}),
      token("dash", "dash-secret-333", {Role::kReader, Role::kOperator}, {"acme", "globex"}),
  };
};

TEST_F(ApiAuth, FindsTheTokenByItsSecret) {
  auto r = authenticate(tokens, "Bearer crm-secret-22");
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  EXPECT_EQ((*r)->name, "crm");
  r = authenticate(tokens, "  bearer   dash-secret-333  ");
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  EXPECT_EQ((*r)->name, "dash");
}

TEST_F(ApiAuth, MissingMalformedAndInvalidAreToldApart) {
  EXPECT_EQ(authenticate(tokens, "").error().code, "auth.missing");
  EXPECT_EQ(authenticate(tokens, "   ").error().code, "auth.missing");
  EXPECT_EQ(authenticate(tokens, "Basic b3BzOm9wcw==").error().code, "auth.malformed");
  EXPECT_EQ(authenticate(tokens, "Bearer").error().code, "auth.malformed");
  EXPECT_EQ(authenticate(tokens, "Bearer    ").error().code, "auth.malformed");
  EXPECT_EQ(authenticate(tokens, "Bearerops-secret-1").error().code, "auth.malformed");
  EXPECT_EQ(authenticate(tokens, "Bearer ops-secret-").error().code, "auth.invalid");
  EXPECT_EQ(authenticate(tokens, "Bearer ops-secret-12").error().code, "auth.invalid");
  EXPECT_EQ(authenticate({}, "Bearer ops-secret-1").error().code, "auth.invalid");
}

TEST_F(ApiAuth, ErrorsNeverRepeatThePresentedSecret) {
  for (const char* header : {"Bearer wrong-but-secret-value", "Token wrong-but-secret-value"}) {
    auto r = authenticate(tokens, header);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().message.find("wrong-but-secret-value"), std::string::npos);
    EXPECT_EQ(r.error().hint.find("wrong-but-secret-value"), std::string::npos);
  }
}

TEST_F(ApiAuth, RolesGrantTheirPermissions) {
  const ApiToken& ops = tokens[0];
  const ApiToken& crm = tokens[1];
  const ApiToken& dash = tokens[2];
  for (auto p : {Permission::kRead, Permission::kOperate, Permission::kSubmit, Permission::kConnect,
                 Permission::kAdminister}) {
    EXPECT_TRUE(permits(ops, p));
  }
  EXPECT_TRUE(permits(crm, Permission::kRead));
  EXPECT_TRUE(permits(crm, Permission::kSubmit));
  EXPECT_TRUE(permits(crm, Permission::kConnect));
  EXPECT_FALSE(permits(crm, Permission::kOperate));
  EXPECT_FALSE(permits(crm, Permission::kAdminister));
  EXPECT_TRUE(permits(dash, Permission::kRead));
  EXPECT_TRUE(permits(dash, Permission::kOperate));
  EXPECT_FALSE(permits(dash, Permission::kSubmit));
  EXPECT_FALSE(permits(dash, Permission::kConnect));
  const ApiToken none = token("none", "x", {});
  EXPECT_FALSE(permits(none, Permission::kRead));
}

TEST_F(ApiAuth, TenantScope) {
  EXPECT_TRUE(inScope(tokens[0], "anything"));
  EXPECT_TRUE(inScope(tokens[1], "acme"));
  EXPECT_FALSE(inScope(tokens[1], "globex"));
  EXPECT_FALSE(inScope(tokens[1], "Acme")); // tenant ids are exact
  EXPECT_TRUE(inScope(tokens[2], "globex"));
  EXPECT_FALSE(inScope(tokens[2], ""));
}

} // namespace
} // namespace mailgate::api
