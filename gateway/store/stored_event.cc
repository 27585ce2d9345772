#include "gateway/store/stored_event.h"

#include "gateway/store/json_writer.h"

namespace mailgate::store {

std::string StoredEvent::toJson() const {
  JsonWriter w;
  w.beginObject();
  w.key("id").value(id);
  w.key("type").value(type);
  w.key("time").value(time);
  w.key("tenant").value(tenant);
  w.key("mailbox").value(mailbox);
  w.key("data").raw(data.empty() ? std::string_view("{}") : std::string_view(data));
  w.endObject();
  return w.take();
}

} // namespace mailgate::store
