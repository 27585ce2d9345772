// base/log.h: JSON lines that parse whatever the message holds, text lines that stay one line,
// and Secrets printed as *** in both.
#include "base/log.h"
#include "base/secret.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sstream>

namespace mailgate {
namespace {

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    out.push_back(line);
  }
  return out;
}

class LogTest : public ::testing::Test {
protected:
  void use(LogLevel level, LogFormat format) {
    setupLogging(level, format, std::make_shared<spdlog::sinks::ostream_sink_mt>(out_));
  }
  // The sink refers to out_; detach it before out_ goes away.
  void TearDown() override {
    setupLogging(LogLevel::kInfo, LogFormat::kText,
                 std::make_shared<spdlog::sinks::null_sink_mt>());
  }
  std::string output() {
    logger("test")->flush();
    return out_.str();
  }

  std::ostringstream out_;
};

TEST_F(LogTest, JsonLineHasTheFourFields) {
  use(LogLevel::kInfo, LogFormat::kJson);
  logger("smtp")->info("hello {}", 42);
  const auto got = lines(output());
  ASSERT_EQ(got.size(), 1U);
  const auto j = nlohmann::json::parse(got[0]);
  EXPECT_EQ(j.size(), 4U);
  EXPECT_EQ(j.at("level"), "info");
  EXPECT_EQ(j.at("component"), "smtp");
  EXPECT_EQ(j.at("msg"), "hello 42");
  const std::string time = j.at("time");
  EXPECT_EQ(time.size(), std::string("2026-11-23T14:27:00.123Z").size()) << time;
  EXPECT_EQ(time.back(), 'Z');
  EXPECT_EQ(time[10], 'T');
}

TEST_F(LogTest, JsonEscapesQuotesNewlinesAndControlCharacters) {
  use(LogLevel::kTrace, LogFormat::kJson);
  const std::string hostile =
      std::string("a\"b\\c\nd\re\tf\x01g\x1f") + '\0' + "h\x7f" + "\",\"level\":\"forged";
  logger("queue")->warn("{}", hostile);
  const auto got = lines(output());
  ASSERT_EQ(got.size(), 1U);
  const auto j = nlohmann::json::parse(got[0]);
  EXPECT_EQ(j.at("msg").get<std::string>(), hostile);
  EXPECT_EQ(j.at("level"), "warn");
  EXPECT_EQ(j.size(), 4U);
}

TEST_F(LogTest, JsonReplacesInvalidUtf8AndKeepsValidUtf8) {
  use(LogLevel::kInfo, LogFormat::kJson);
  logger("net")->info("caf\xc3\xa9 \xff\xfe \xe2\x82 \xed\xa0\x80 \xf0\x9f\x93\xa8");
  const auto j = nlohmann::json::parse(lines(output()).at(0));
  EXPECT_EQ(j.at("msg").get<std::string>(),
            "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd "
            "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xf0\x9f\x93\xa8");
}

TEST_F(LogTest, ComponentNameIsEscapedToo) {
  use(LogLevel::kInfo, LogFormat::kJson);
  logger("we\"ird\n")->info("x");
  const auto j = nlohmann::json::parse(lines(output()).at(0));
  EXPECT_EQ(j.at("component"), "we\"ird\n");
}

TEST_F(LogTest, SecretPrintsAsStarsInJson) {
  use(LogLevel::kInfo, LogFormat::kJson);
  logger("smtp")->info("auth user={} password={}", "crm", Secret("hunter2"));
  const std::string text = output();
  EXPECT_EQ(text.find("hunter2"), std::string::npos);
  const auto j = nlohmann::json::parse(lines(text).at(0));
  EXPECT_EQ(j.at("msg"), "auth user=crm password=***");
}

TEST_F(LogTest, SecretPrintsAsStarsInText) {
  use(LogLevel::kInfo, LogFormat::kText);
  logger("smtp")->info("password={}", Secret("hunter2"));
  const std::string text = output();
  EXPECT_EQ(text.find("hunter2"), std::string::npos);
  EXPECT_NE(text.find(" info smtp: password=***"), std::string::npos) << text;
}

TEST_F(LogTest, TextStaysOnOneLine) {
  use(LogLevel::kInfo, LogFormat::kText);
  logger("smtp")->error("line1\r\nFAKE 2026 info smtp: forged\x1b[31m\\");
  const auto got = lines(output());
  ASSERT_EQ(got.size(), 1U);
  EXPECT_NE(got[0].find(" error smtp: line1\\r\\nFAKE 2026 info smtp: forged\\x1b[31m\\\\"),
            std::string::npos)
      << got[0];
}

TEST_F(LogTest, LevelFiltersAndCanChangeAtRuntime) {
  use(LogLevel::kWarn, LogFormat::kText);
  auto log = logger("level-test");
  log->info("hidden");
  log->warn("shown");
  use(LogLevel::kDebug, LogFormat::kJson);
  log->debug("now shown");
  log->trace("still hidden");
  const auto got = lines(output());
  ASSERT_EQ(got.size(), 2U);
  EXPECT_NE(got[0].find(" warn level-test: shown"), std::string::npos) << got[0];
  EXPECT_EQ(nlohmann::json::parse(got[1]).at("msg"), "now shown");
}

TEST_F(LogTest, OneLoggerPerComponent) {
  EXPECT_EQ(logger("relay"), logger("relay"));
  EXPECT_NE(logger("relay"), logger("imap"));
  EXPECT_EQ(logger("relay")->name(), "relay");
}

TEST(LogNames, ParseAndPrint) {
  EXPECT_EQ(parseLogLevel("warn"), LogLevel::kWarn);
  EXPECT_EQ(parseLogLevel("trace"), LogLevel::kTrace);
  EXPECT_FALSE(parseLogLevel("warning").has_value());
  EXPECT_EQ(parseLogFormat("json"), LogFormat::kJson);
  EXPECT_FALSE(parseLogFormat("xml").has_value());
  EXPECT_EQ(toString(LogLevel::kError), "error");
  EXPECT_EQ(toString(LogFormat::kText), "text");
}

TEST(JsonEscape, EveryAsciiByteRoundTrips) {
  std::string all;
  for (int c = 0; c < 128; ++c) {
    all += static_cast<char>(c);
  }
  std::string quoted = "\"";
  appendJsonEscaped(all, quoted);
  quoted += "\"";
  EXPECT_EQ(nlohmann::json::parse(quoted).get<std::string>(), all);
}

TEST(TextEscape, NoControlCharacterSurvives) {
  std::string all;
  for (int c = 0; c < 128; ++c) {
    all += static_cast<char>(c);
  }
  std::string out;
  appendTextEscaped(all, out);
  for (const char c : out) {
    EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 || c == 0x7f) << static_cast<int>(c);
  }
}

} // namespace
} // namespace mailgate
