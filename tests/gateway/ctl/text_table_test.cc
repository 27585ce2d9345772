#include "gateway/ctl/text_table.h"

#include <gtest/gtest.h>

namespace mailgate::ctl {
namespace {

TEST(TextTable, AlignsColumnsTwoSpacesApartWithoutTrailingSpaces) {
  TextTable t({"ID", "STATE", "LAST_REPLY"});
  t.addRow({"01JA", "queued", ""});
  t.addRow({"01JBBBBB", "deferred", "451 4.7.0 try later"});
  EXPECT_EQ(t.render(0), "ID        STATE     LAST_REPLY\n"
                         "01JA      queued\n"
                         "01JBBBBB  deferred  451 4.7.0 try later\n");
}

TEST(TextTable, TheLastColumnIsCutAt60WhenNotATerminal) {
  TextTable t({"A", "B"});
  t.addRow({"x", std::string(100, 'r')});
  const std::string out = t.render(0);
  const std::string row = out.substr(out.find('\n') + 1);
  EXPECT_EQ(row, "x  " + std::string(59, 'r') + "\u2026\n");
}

TEST(TextTable, TheLastColumnIsCutToTheTerminalWidth) {
  TextTable t({"AAAA", "B"});
  t.addRow({"x", std::string(100, 'r')});
  const std::string out = t.render(30);
  const std::string row = out.substr(out.find('\n') + 1);
  EXPECT_EQ(row, "x     " + std::string(23, 'r') + "\u2026\n");
  EXPECT_EQ(displayWidth(row.substr(0, row.size() - 1)), 30u);
  // A terminal too narrow still leaves ten characters of the last column.
  const std::string narrow = t.render(5);
  EXPECT_EQ(narrow.substr(narrow.find('\n') + 1), "x     " + std::string(9, 'r') + "\u2026\n");
  // Short enough: nothing is cut.
  TextTable s({"A", "B"});
  s.addRow({"x", "short"});
  EXPECT_EQ(s.render(200), "A  B\nx  short\n");
}

TEST(TextTable, CellsFromTheServerCannotDriveTheTerminal) {
  TextTable t({"A", "B"});
  t.addRow({"evil\x1b[2J", "line1\r\nline2\x07\xC2\x9B"
                           "31m"});
  EXPECT_EQ(t.render(0), "A         B\nevil?[2J  line1  line2??31m\n");
}

TEST(TextTable, MissingCellsAreEmptyAndExtraOnesDropped) {
  TextTable t({"A", "B", "C"});
  t.addRow({"1"});
  t.addRow({"1", "2", "3", "4"});
  EXPECT_EQ(t.render(0), "A  B  C\n1\n1  2  3\n");
}

TEST(TextTable, WidthCountsCodePoints) {
  EXPECT_EQ(displayWidth("m\xC3\xBCller"), 6u);
  EXPECT_EQ(displayWidth("\xE2\x80\xA6"), 1u);
  TextTable t({"NAME", "X"});
  t.addRow({"m\xC3\xBCller", "1"});
  EXPECT_EQ(t.render(0), "NAME    X\nm\xC3\xBCller  1\n");
}

TEST(Sanitize, InvalidUtf8BecomesQuestionMarks) {
  EXPECT_EQ(sanitizeCell("a\xFF"
                         "b\xC3"),
            "a?b?");
  EXPECT_EQ(sanitizeCell("\xC0\xAF"), "??");      // overlong '/'
  EXPECT_EQ(sanitizeCell("\xED\xA0\x80"), "???"); // a surrogate
  EXPECT_EQ(sanitizeCell("caf\xC3\xA9 \xF0\x9F\x93\xA7"), "caf\xC3\xA9 \xF0\x9F\x93\xA7");
  EXPECT_EQ(sanitizeCell("del\x7f"), "del?");
}

TEST(Truncate, CutsOnCodePointsWithAnEllipsis) {
  EXPECT_EQ(truncateDisplay("abcdef", 6), "abcdef");
  EXPECT_EQ(truncateDisplay("abcdefg", 6), "abcde\u2026");
  EXPECT_EQ(truncateDisplay("\xC3\xA9\xC3\xA9\xC3\xA9", 2), "\xC3\xA9\u2026");
  EXPECT_EQ(truncateDisplay("abc", 0), "");
}

TEST(KeyValueBlock, AlignsValues) {
  KeyValueBlock b;
  b.add("id", "01JX");
  b.add("next attempt", "2026-12-03T10:10:00.000Z");
  b.add("empty", "");
  b.add("bad", "a\nb");
  EXPECT_EQ(b.render(), "id:           01JX\n"
                        "next attempt: 2026-12-03T10:10:00.000Z\n"
                        "empty:\n"
                        "bad:          a b\n");
}

} // namespace
} // namespace mailgate::ctl
