#include "imap/sent_folder.h"

#include <gtest/gtest.h>

namespace mailgate::imap {
namespace {

FolderInfo folder(std::string name, std::vector<std::string> attributes = {}) {
  FolderInfo f;
  f.name = std::move(name);
  f.wire_name = f.name;
  f.attributes = std::move(attributes);
  f.delimiter = '/';
  return f;
}

TEST(SentFolder, TheSentAttributeWins) {
  std::vector<FolderInfo> folders{folder("INBOX"), folder("Sent Items"),
                                  folder("Gesendet", {"\\HasNoChildren", "\\sent"})};
  EXPECT_EQ(findSentFolder(folders, "Sent Items"), "Gesendet");
}

TEST(SentFolder, ThenALocalizedName) {
  std::vector<FolderInfo> folders{folder("INBOX"), folder("Archive"), folder("Éléments envoyés")};
  EXPECT_EQ(findSentFolder(folders, ""), "Éléments envoyés");
  std::vector<FolderInfo> nested{folder("INBOX"), folder("INBOX/sent items")};
  EXPECT_EQ(findSentFolder(nested, ""), "INBOX/sent items");
}

TEST(SentFolder, ThenTheConfiguration) {
  std::vector<FolderInfo> folders{folder("INBOX"), folder("Outbox Copies")};
  EXPECT_EQ(findSentFolder(folders, "Outbox Copies"), "Outbox Copies");
  EXPECT_EQ(findSentFolder(folders, "Missing"), "");
  EXPECT_EQ(findSentFolder({}, "Configured"), "Configured");
}

TEST(SentFolder, AnUnselectableFolderIsNotSent) {
  std::vector<FolderInfo> folders{folder("Sent Items", {"\\Noselect", "\\Sent"}), folder("Sent")};
  EXPECT_EQ(findSentFolder(folders, ""), "Sent");
}

} // namespace
} // namespace mailgate::imap
