#include "gateway/webhooks/ack_window.h"

#include <gtest/gtest.h>

namespace mailgate::webhooks {
namespace {

TEST(AckWindow, StartsAtItsCursor) {
  AckWindow w(41);
  EXPECT_EQ(w.cursor(), 41);
  EXPECT_EQ(w.last(), 41);
  EXPECT_EQ(w.openCount(), 0U);
  EXPECT_FALSE(w.full());
}

TEST(AckWindow, TheCursorMovesOverTheContiguousPrefixOnly) {
  AckWindow w(0);
  ASSERT_TRUE(w.open(1));
  ASSERT_TRUE(w.open(2));
  ASSERT_TRUE(w.open(3));
  EXPECT_EQ(w.cursor(), 0);
  EXPECT_TRUE(w.ack(2)); // out of order: 1 is still owed
  EXPECT_EQ(w.cursor(), 0);
  EXPECT_TRUE(w.ack(3));
  EXPECT_EQ(w.cursor(), 0);
  EXPECT_TRUE(w.ack(1));
  EXPECT_EQ(w.cursor(), 3);
}

TEST(AckWindow, SkippedEventsDoNotHoldTheCursorNorTakeASlot) {
  AckWindow w(10, 2);
  EXPECT_TRUE(w.skip(11));
  EXPECT_EQ(w.cursor(), 11);
  ASSERT_TRUE(w.open(12));
  EXPECT_TRUE(w.skip(13));
  EXPECT_TRUE(w.skip(14));
  EXPECT_EQ(w.cursor(), 11); // 12 is owed
  ASSERT_TRUE(w.open(15));
  EXPECT_TRUE(w.full());
  EXPECT_TRUE(w.ack(12));
  EXPECT_EQ(w.cursor(), 14); // 13 and 14 were skipped; 15 is owed
  EXPECT_TRUE(w.ack(15));
  EXPECT_EQ(w.cursor(), 15);
}

TEST(AckWindow, AFullWindowOpensNothingMore) {
  AckWindow w(0, 2);
  ASSERT_TRUE(w.open(1));
  ASSERT_TRUE(w.open(2));
  EXPECT_TRUE(w.full());
  EXPECT_FALSE(w.open(3));
  EXPECT_EQ(w.last(), 2);
  EXPECT_TRUE(w.ack(2));
  EXPECT_FALSE(w.full());
  EXPECT_TRUE(w.open(3));
  EXPECT_EQ(w.cursor(), 0); // 1 still owed, however long its retries take
}

TEST(AckWindow, SeqsOnlyGoForwardAndAcksAreIdempotent) {
  AckWindow w(5);
  EXPECT_FALSE(w.open(5));
  EXPECT_FALSE(w.skip(4));
  ASSERT_TRUE(w.open(7)); // gaps in seq are fine
  EXPECT_FALSE(w.open(6));
  EXPECT_FALSE(w.ack(6)); // never opened
  EXPECT_TRUE(w.ack(7));
  EXPECT_FALSE(w.ack(7)); // a late duplicate
  EXPECT_EQ(w.cursor(), 7);
}

TEST(AckWindow, ACapacityOfZeroStillSendsOneAtATime) {
  AckWindow w(0, 0);
  EXPECT_TRUE(w.open(1));
  EXPECT_FALSE(w.open(2));
}

} // namespace
} // namespace mailgate::webhooks
