#include "imap/protocol/sequence_set.h"

#include <gtest/gtest.h>

namespace mailgate::imap::protocol {
namespace {

TEST(SequenceSet, ParsesRfc9051Forms) {
  auto set = SequenceSet::parse("2,4:7,9,12:*");
  ASSERT_TRUE(set.has_value());
  ASSERT_EQ(set->ranges().size(), 4u);
  EXPECT_EQ(set->ranges()[1].first, 4u);
  EXPECT_EQ(set->ranges()[1].last, 7u);
  EXPECT_EQ(set->ranges()[3].last, SequenceSet::kStar);
  EXPECT_TRUE(set->contains(5));
  EXPECT_FALSE(set->contains(8));
  EXPECT_TRUE(set->contains(100000));
  EXPECT_EQ(set->format(), "2,4:7,9,12:*");
}

TEST(SequenceSet, NormalisesReversedRangesButKeepsOrderAndOverlap) {
  auto set = SequenceSet::parse("7:4,5,*:3");
  ASSERT_TRUE(set.has_value());
  EXPECT_EQ(set->format(), "4:7,5,3:*");
  EXPECT_EQ(set->ranges()[0].first, 4u);
}

TEST(SequenceSet, RefusesMalformedSets) {
  for (const char* bad : {"", "0", "1:0", ",", "1,", ",1", "1::2", "a", "1 2", "4294967296",
                          "1:", "-1", "1;2", "**"}) {
    auto set = SequenceSet::parse(bad);
    EXPECT_FALSE(set.has_value()) << bad;
    if (!set) {
      EXPECT_EQ(set.error().code, "imap.syntax");
    }
  }
  EXPECT_TRUE(SequenceSet::parse("4294967295").has_value());
}

TEST(SequenceSet, FromNumbersSortsDeduplicatesAndMerges) {
  const auto set = SequenceSet::fromNumbers({9, 3, 1, 2, 3, 7, 8, 20, SequenceSet::kStar - 1});
  EXPECT_EQ(set.format(), "1:3,7:9,20,4294967294");
  EXPECT_EQ(set.size(), 8u);
  EXPECT_TRUE(SequenceSet::fromNumbers({}).empty());
}

TEST(SequenceSet, SizeCountsOverlapsOnce) {
  auto set = SequenceSet::parse("1:10,5:15,20").value();
  EXPECT_EQ(set.size(), 16u);
  EXPECT_EQ(SequenceSet::parse("1:*").value().size(), 4294967295u);
}

TEST(SequenceSet, ExpandIsAscendingUniqueAndBounded) {
  auto set = SequenceSet::parse("5:3,1,4,9").value();
  auto numbers = set.expand(10);
  ASSERT_TRUE(numbers.has_value());
  EXPECT_EQ(*numbers, (std::vector<uint32_t>{1, 3, 4, 5, 9}));
  auto too_many = SequenceSet::parse("1:*").value().expand(1000);
  ASSERT_FALSE(too_many.has_value());
  EXPECT_EQ(too_many.error().code, "imap.limit");
  EXPECT_FALSE(set.expand(4).has_value());
  EXPECT_TRUE(set.expand(5).has_value());
}

TEST(SequenceSet, AddAndFormatRoundTrip) {
  SequenceSet set;
  set.add(10, 2);
  set.add(SequenceSet::kStar, SequenceSet::kStar);
  set.add(44, 44);
  EXPECT_EQ(set.format(), "2:10,*,44");
  EXPECT_EQ(SequenceSet::parse(set.format()).value().format(), set.format());
}

} // namespace
} // namespace mailgate::imap::protocol
