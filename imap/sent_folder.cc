#include "imap/sent_folder.h"

#include "imap/protocol/ascii.h"

#include <algorithm>
#include <array>

namespace mailgate::imap {

namespace {

using protocol::ascii::iequals;

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
  if (folder.delimiter && name.size() > 6 && iequals(name.substr(0, 5), "INBOX") &&
      name[5] == *folder.delimiter) {
    name.remove_prefix(6);
  }
  return name;
}

} // namespace

std::string findSentFolder(const std::vector<FolderInfo>& folders, std::string_view configured) {
  for (const auto& folder : folders) {
    if (folder.selectable() && std::ranges::any_of(folder.attributes, [](const std::string& a) {
          return iequals(a, "\\Sent");
        })) {
      return folder.name;
    }
  }
  for (std::string_view wanted : kSentNames) {
    for (const auto& folder : folders) {
      if (folder.selectable() && iequals(leaf(folder), wanted)) {
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
