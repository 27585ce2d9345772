#include "gateway/ctl/token_source.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <unistd.h>

namespace mailgate::ctl {
namespace {

class TokenSource : public ::testing::Test {
protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("mailgatectl-token-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& content) {
    const auto path = dir_ / name;
    std::ofstream(path, std::ios::binary) << content;
    return path.string();
  }

  std::filesystem::path dir_;
};

TEST_F(TokenSource, FileWithATrailingNewline) {
  const auto path = write("t", "tok-123456\n");
  auto t = loadToken({path, std::nullopt, std::nullopt});
  ASSERT_TRUE(t.has_value()) << t.error().message;
  EXPECT_EQ(t->reveal(), "tok-123456");
  EXPECT_EQ(readTokenFile(write("crlf", "tok-crlf\r\n\n"))->reveal(), "tok-crlf");
  EXPECT_EQ(readTokenFile(write("bare", "tok-bare"))->reveal(), "tok-bare");
}

TEST_F(TokenSource, TheOptionBeatsTheVariablesAndTheTokenVariableBeatsTheFileVariable) {
  const auto a = write("a", "from-option\n");
  const auto b = write("b", "from-env-file\n");
  EXPECT_EQ(loadToken({a, "from-env", b})->reveal(), "from-option");
  EXPECT_EQ(loadToken({std::nullopt, "from-env", b})->reveal(), "from-env");
  EXPECT_EQ(loadToken({std::nullopt, std::nullopt, b})->reveal(), "from-env-file");
  // An empty variable counts as unset.
  EXPECT_EQ(loadToken({std::nullopt, "", b})->reveal(), "from-env-file");
}

TEST_F(TokenSource, NoTokenIsAClearError) {
  for (const TokenSources& s : {TokenSources{}, TokenSources{std::nullopt, "", ""}}) {
    auto t = loadToken(s);
    ASSERT_FALSE(t.has_value());
    EXPECT_EQ(t.error().code, "ctl.token");
    EXPECT_EQ(t.error().message, "no API token given");
    EXPECT_NE(t.error().hint.find("MAILGATE_TOKEN"), std::string::npos);
    EXPECT_NE(t.error().hint.find("--token-file"), std::string::npos);
  }
}

TEST_F(TokenSource, UnreadableEmptyOrMalformedFilesAreRefusedWithoutShowingTheContent) {
  auto t = readTokenFile((dir_ / "missing").string());
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code, "ctl.token");
  EXPECT_NE(t.error().message.find("missing"), std::string::npos);

  t = readTokenFile(write("empty", "\n\n"));
  ASSERT_FALSE(t.has_value());
  EXPECT_NE(t.error().message.find("is empty"), std::string::npos);

  for (const char* content : {"two words-secret\n", "line-one-secret\nline-two-secret\n",
                              "tab\tsecret", "esc\x1bsecret", "caf\xC3\xA9-secret"}) {
    t = readTokenFile(write("bad", content));
    ASSERT_FALSE(t.has_value()) << content;
    EXPECT_EQ(t.error().code, "ctl.token");
    EXPECT_EQ(t.error().message.find("-secret"), std::string::npos) << t.error().message;
    EXPECT_EQ(t.error().hint.find("-secret"), std::string::npos) << t.error().hint;
  }
}

TEST_F(TokenSource, TheVariableIsCheckedLikeAFile) {
  EXPECT_EQ(loadToken({std::nullopt, "tok-env\n", std::nullopt})->reveal(), "tok-env");
  auto t = loadToken({std::nullopt, "has space-secret", std::nullopt});
  ASSERT_FALSE(t.has_value());
  EXPECT_NE(t.error().message.find("MAILGATE_TOKEN"), std::string::npos);
  EXPECT_EQ(t.error().message.find("space-secret"), std::string::npos);
}

TEST_F(TokenSource, AHugeFileIsRefused) {
  auto t = readTokenFile(write("huge", std::string(70 * 1024, 'a')));
  ASSERT_FALSE(t.has_value());
  EXPECT_NE(t.error().message.find("64 KiB"), std::string::npos);
}

} // namespace
} // namespace mailgate::ctl
