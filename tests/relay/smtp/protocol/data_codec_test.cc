#include "relay/smtp/protocol/data_decoder.h"
#include "relay/smtp/protocol/dot_stuffer.h"

#include <gtest/gtest.h>

namespace mailgate::relay::smtp {
namespace {

struct Decoded {
  std::string data;
  std::size_t consumed = 0;
  bool done = false;
  DataDecoder decoder{0};
};

// Feeds `wire` cut at the given positions and returns what the decoder made of it.
Decoded decodeSplit(std::string_view wire, const std::vector<std::size_t>& cuts,
                    std::uint64_t max = 1 << 20) {
  Decoded d{.data = {}, .consumed = 0, .done = false, .decoder = DataDecoder(max)};
  std::size_t pos = 0;
  std::vector<std::size_t> all = cuts;
  all.push_back(wire.size());
  for (const std::size_t cut : all) {
    if (cut < pos || cut > wire.size()) {
      continue;
    }
    const std::size_t used = d.decoder.feed(wire.substr(pos, cut - pos));
    d.consumed += used;
    pos = cut;
    if (d.decoder.done()) {
      break;
    }
  }
  d.done = d.decoder.done();
  d.data = d.decoder.data();
  return d;
}

TEST(DotStuffer, StuffsAndNormalisesLineEnds) {
  EXPECT_EQ(dotStuff(""), ".\r\n");
  EXPECT_EQ(dotStuff("a"), "a\r\n.\r\n");
  EXPECT_EQ(dotStuff("a\r\n"), "a\r\n.\r\n");
  EXPECT_EQ(dotStuff(".a\n..b\r.\r\nc"), "..a\r\n...b\r\n..\r\nc\r\n.\r\n");
  EXPECT_EQ(dotStuff("x\n.\n"), "x\r\n..\r\n.\r\n");
  EXPECT_EQ(dotStuff("a\r\r\nb\r"), "a\r\n\r\nb\r\n.\r\n");
  EXPECT_EQ(dotStuff("mid.dot\r\n"), "mid.dot\r\n.\r\n");
}

TEST(DotStuffer, StreamingEqualsOneShotForEverySplit) {
  const std::string msg = "Subject: x\r\n.\r\n..two\n\r.\rtail.\r";
  const std::string whole = dotStuff(msg);
  for (std::size_t cut = 0; cut <= msg.size(); ++cut) {
    DotStuffer s;
    std::string out;
    s.feed(std::string_view(msg).substr(0, cut), out);
    s.feed(std::string_view(msg).substr(cut), out);
    s.finish(out);
    EXPECT_EQ(out, whole) << cut;
  }
}

TEST(DataDecoder, UnstuffsAndStopsAtTheTerminator) {
  const std::string wire = "Line 1\r\n..dotted\r\n.\r\nMAIL FROM:<next@example.com>\r\n";
  const Decoded d = decodeSplit(wire, {});
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.data, "Line 1\r\n.dotted\r\n");
  EXPECT_EQ(d.consumed, wire.find("MAIL"));
}

TEST(DataDecoder, EmptyMessage) {
  const Decoded d = decodeSplit(".\r\n", {});
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.data, "");
  EXPECT_EQ(d.consumed, 3u);
}

TEST(DataDecoder, EverySplitPointGivesTheSameResult) {
  const std::string wire = "a\r\n.b\r\n\r\n..\r\nx.\r\n.\r\nQUIT\r\n";
  const Decoded whole = decodeSplit(wire, {});
  ASSERT_TRUE(whole.done);
  EXPECT_EQ(whole.data, "a\r\nb\r\n\r\n.\r\nx.\r\n");
  for (std::size_t i = 0; i <= wire.size(); ++i) {
    for (std::size_t j = i; j <= wire.size(); j += 3) {
      const Decoded d = decodeSplit(wire, {i, j});
      EXPECT_TRUE(d.done) << i << "," << j;
      EXPECT_EQ(d.data, whole.data) << i << "," << j;
      EXPECT_EQ(d.consumed, whole.consumed) << i << "," << j;
    }
  }
}

TEST(DataDecoder, ByteByByteAcrossTheCrLfDotBoundary) {
  const std::string wire = "body\r\n.\r\n";
  Decoded d{.data = {}, .consumed = 0, .done = false, .decoder = DataDecoder(100)};
  std::size_t used = 0;
  for (const char c : wire) {
    used += d.decoder.feed(std::string_view(&c, 1));
  }
  EXPECT_TRUE(d.decoder.done());
  EXPECT_EQ(used, wire.size());
  EXPECT_EQ(d.decoder.data(), "body\r\n");
}

TEST(DataDecoder, BareLfDotIsNeverTheEnd) {
  // SMTP smuggling (CVE-2023-51766 and kin): none of these may end the message.
  for (const char* smuggle :
       {"a\n.\nMAIL FROM:<x@y.z>\n", "a\r\n.\nMAIL FROM:<x@y.z>\r\n",
        "a\n.\r\nMAIL FROM:<x@y.z>\r\n", "a\r.\r\nMAIL FROM:<x@y.z>\r\n", "a\r\n.\r.\r\n"}) {
    const std::string wire = std::string(smuggle) + "\r\n.\r\n";
    const Decoded d = decodeSplit(wire, {});
    EXPECT_TRUE(d.done) << smuggle;
    EXPECT_EQ(d.consumed, wire.size()) << smuggle;
    if (std::string_view(smuggle).find("MAIL") != std::string_view::npos) {
      EXPECT_NE(d.data.find("MAIL FROM"), std::string::npos) << smuggle;
    }
    // Stored with CRLF only: relaying it re-stuffs every line, so nothing ends early downstream.
    for (std::size_t i = 0; i < d.data.size(); ++i) {
      if (d.data[i] == '\n') {
        EXPECT_TRUE(i > 0 && d.data[i - 1] == '\r') << smuggle;
      }
      if (d.data[i] == '\r') {
        EXPECT_TRUE(i + 1 < d.data.size() && d.data[i + 1] == '\n') << smuggle;
      }
    }
    EXPECT_TRUE(d.decoder.sawBareLf() || d.decoder.sawBareCr()) << smuggle;
  }
}

TEST(DataDecoder, BareLineEndsAreStoredAsCrLf) {
  const Decoded d = decodeSplit("a\nb\rc\r\r\n.\r\n", {});
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.data, "a\r\nb\r\nc\r\n\r\n");
}

TEST(DataDecoder, NulIsFlaggedAndNotStored) {
  const std::string wire("a\0b\r\n.\r\n", 8);
  const Decoded d = decodeSplit(wire, {});
  EXPECT_TRUE(d.done);
  EXPECT_TRUE(d.decoder.sawNul());
  EXPECT_EQ(d.data, "ab\r\n");
}

TEST(DataDecoder, OverLimitKeepsCountingButStoresNothing) {
  std::string wire;
  for (int i = 0; i < 100; ++i) {
    wire += "0123456789\r\n";
  }
  wire += ".\r\nNOOP\r\n";
  const Decoded d = decodeSplit(wire, {50, 500, 777}, 200);
  EXPECT_TRUE(d.done);
  EXPECT_TRUE(d.decoder.overflowed());
  EXPECT_EQ(d.decoder.size(), 1200u);
  EXPECT_EQ(d.data, "");
  EXPECT_EQ(d.consumed, wire.size() - 6);
}

TEST(DataDecoder, ExactlyAtTheLimitIsAccepted) {
  const Decoded d = decodeSplit("12345678\r\n.\r\n", {}, 10);
  EXPECT_TRUE(d.done);
  EXPECT_FALSE(d.decoder.overflowed());
  EXPECT_EQ(d.data, "12345678\r\n");
}

TEST(DotStuffing, RoundTripsThroughTheDecoder) {
  for (const char* msg : {"", "x", ".", "..", "a\r\n.\r\nb", "\n.\n", "\r.\r", ".\r\n.\r\n.",
                          "line\r\n..\r\n...\r\n"}) {
    const std::string wire = dotStuff(msg);
    const Decoded d = decodeSplit(wire, {});
    EXPECT_TRUE(d.done) << msg;
    EXPECT_EQ(d.consumed, wire.size()) << msg;
    // The decoder gives back the CRLF-normalised message with a final CRLF.
    const std::string normalised = [&] {
      std::string out;
      const std::string_view m = msg;
      for (std::size_t i = 0; i < m.size(); ++i) {
        if (m[i] == '\r') {
          out += "\r\n";
          if (i + 1 < m.size() && m[i + 1] == '\n') {
            ++i;
          }
        } else if (m[i] == '\n') {
          out += "\r\n";
        } else {
          out += m[i];
        }
      }
      if (!out.empty() && !out.ends_with("\r\n")) {
        out += "\r\n";
      }
      return out;
    }();
    EXPECT_EQ(d.data, normalised) << msg;
  }
}

} // namespace
} // namespace mailgate::relay::smtp
