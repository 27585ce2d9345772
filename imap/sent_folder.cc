#include "imap/sent_folder.h"

#include <algorithm>
#include <array>

namespace mailgate::imap {

namespace {

bool iequalsAscii(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](char x, char y) {
    return (x >= 'a' && x <= 'z' ? x - 32 : x) == (y >= 'a' && y <= 'z' ? y - 32 : y);
  });
}

// Names Microsoft 365 and other servers give the Sent folder in the languages mailboxes are
// commonly set to. Matched after the \Sent attribute, which is the reliable signal.
constexpr std::array kSentNames = {
    "Sent Items",
    "Sent",
    "Sent Messages",
    "Sent Mail",
    "Gesendete Elemente",
    "Gesendet",
    "Éléments envoyés",
    "Elementos enviados",
    "Itens Enviados",
    "Posta inviata",
    "Elementi inviati",
    "Verzonden items",
    "Skickat",
    "Sendte elementer",
    "Lähetetyt",
    "Wysłane",
    "Odeslaná pošta",
    "Отправленные",
    "送信済みアイテム",
    "已发送邮件",
};

// The name without an "INBOX<delimiter>" prefix.
std::string_view leaf(const FolderInfo& folder) {
  std::string_view name = folder.name;
  if (folder.delimiter && name.size() > 6 && iequalsAscii(name.substr(0, 5), "INBOX") &&
      name[5] == *folder.delimiter) {
    name.remove_prefix(6);
  }
  return name;
}

} // namespace

std::string findSentFolder(const std::vector<FolderInfo>& folders, std::string_view configured) {
  for (const auto& folder : folders) {
    if (folder.selectable() && std::ranges::any_of(folder.attributes, [](const std::string& a) {
          return iequalsAscii(a, "\\Sent");
        })) {
      return folder.name;
    }
  }
  for (std::string_view wanted : kSentNames) {
    for (const auto& folder : folders) {
      if (folder.selectable() && iequalsAscii(leaf(folder), wanted)) {
        return folder.name;
      }
    }
  }
  if (configured.empty()) {
    return {};
  }
  for (const auto& folder : folders) {
    if (folder.name == configured) {
      return folder.name;
    }
  }
  return folders.empty() ? std::string(configured) : std::string();
}

} // namespace mailgate::imap
