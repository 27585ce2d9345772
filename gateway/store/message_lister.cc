#include "gateway/store/message_lister.h"

#include <algorithm>
#include <fmt/format.h>
#include <optional>
#include <string_view>
#include <utility>

namespace mailgate::store {
namespace {

// The cursor of a newest-first listing without `after`: greater than every id (ids are
// Crockford base32, ASCII letters and digits).
constexpr std::string_view kAfterEveryId = "\x7f";

// Cursor statements kept per shape and direction between pages; a broader page prepares more
// and finalizes them afterwards.
constexpr size_t kKeptCursors = 64;

struct ShapeSpec {
  std::string_view index; // empty: the primary key
  std::vector<std::string_view> columns;
};

const ShapeSpec& shapeSpec(int shape) {
  static const ShapeSpec kSpecs[] = {
      {"", {}},
      {"messages_by_route", {"route", "state"}},
      {"messages_by_tenant", {"tenant", "route", "state"}},
      {"messages_by_mailbox", {"mailbox", "tenant", "route", "state"}},
  };
  return kSpecs[shape];
}

struct DistinctSpec {
  std::string_view index;
  std::vector<std::string_view> prefix;
  std::string_view column;
};

const DistinctSpec& distinctSpec(int which) {
  static const DistinctSpec kSpecs[] = {
      {"messages_by_route", {}, "route"},
      {"messages_by_tenant", {"tenant"}, "route"},
      {"messages_by_mailbox", {"mailbox"}, "tenant"},
      {"messages_by_mailbox", {"mailbox", "tenant"}, "route"},
  };
  return kSpecs[which];
}

// "col = ?n AND ..." for an equality prefix; mailbox compares as its index does.
std::string equalities(const std::vector<std::string_view>& columns) {
  std::string out;
  for (size_t i = 0; i < columns.size(); ++i) {
    out += fmt::format("{} = ?{}{} AND ", columns[i], i + 1,
                       columns[i] == "mailbox" ? " COLLATE NOCASE" : "");
  }
  return out;
}

std::string cursorSql(int shape, bool descending) {
  const ShapeSpec& spec = shapeSpec(shape);
  return fmt::format("SELECT id FROM messages{}{} WHERE {}id {} ?{} ORDER BY id {}",
                     spec.index.empty() ? "" : " INDEXED BY ", spec.index, equalities(spec.columns),
                     descending ? "<" : ">", spec.columns.size() + 1, descending ? "DESC" : "ASC");
}

std::string distinctSql(int which, bool after) {
  const DistinctSpec& spec = distinctSpec(which);
  std::string where = equalities(spec.prefix);
  if (after) {
    where += fmt::format("{} > ?{}", spec.column, spec.prefix.size() + 1);
  } else if (!where.empty()) {
    where.resize(where.size() - 5); // the trailing " AND "
  }
  return fmt::format("SELECT {} FROM messages INDEXED BY {}{}{} ORDER BY {} LIMIT 1", spec.column,
                     spec.index, where.empty() ? "" : " WHERE ", where, spec.column);
}

void bindAll(Statement& s, const std::vector<std::string>& values) {
  int n = 1;
  for (const auto& v : values) {
    s.bind(n++, v);
  }
}

} // namespace

Result<MessageLister> MessageLister::create(SqliteDb& db) {
  MessageLister l(db);
  for (int d = 0; d < kDistincts; ++d) {
    auto first = db.prepare(distinctSql(d, false));
    if (!first) {
      return std::unexpected(std::move(first.error()));
    }
    auto next = db.prepare(distinctSql(d, true));
    if (!next) {
      return std::unexpected(std::move(next.error()));
    }
    l.first_[d] = std::move(*first);
    l.next_[d] = std::move(*next);
  }
  return l;
}

std::vector<std::string> MessageLister::sqlTexts() {
  std::vector<std::string> out;
  for (int shape = 0; shape < kShapes; ++shape) {
    out.push_back(cursorSql(shape, false));
    out.push_back(cursorSql(shape, true));
  }
  for (int d = 0; d < kDistincts; ++d) {
    out.push_back(distinctSql(d, false));
    out.push_back(distinctSql(d, true));
  }
  return out;
}

Result<void> MessageLister::distinct(Distinct which, const std::vector<std::string>& prefix,
                                     size_t cap, std::vector<std::string>& out) {
  // A skip scan: each value is one seek past the previous one, however many rows carry it.
  std::optional<std::string> last;
  while (out.size() <= cap) {
    std::string value;
    {
      Statement& s = last ? next_[which] : first_[which];
      StatementScope scope(s);
      bindAll(s, prefix);
      if (last) {
        s.bind(static_cast<int>(prefix.size()) + 1, *last);
      }
      auto row = s.step();
      if (!row) {
        return std::unexpected(std::move(row.error()));
      }
      if (!*row) {
        return {};
      }
      value = s.text(0);
    }
    out.push_back(value);
    last = std::move(value);
  }
  return {};
}

Result<std::vector<Statement>*> MessageLister::cursors(Shape shape, bool descending, size_t count) {
  auto& pool = cursors_[shape * 2 + (descending ? 1 : 0)];
  while (pool.size() < count) {
    auto s = db_->prepare(cursorSql(shape, descending));
    if (!s) {
      return std::unexpected(std::move(s.error()));
    }
    pool.push_back(std::move(*s));
  }
  return &pool;
}

Result<MessageLister::Ids> MessageLister::page(const MessageQuery& q) {
  Ids out;
  const size_t limit = std::clamp<size_t>(q.limit, 1, kMaxPageLimit);

  // Whose messages: nullopt = every tenant's (and those without one).
  std::optional<std::vector<std::string>> tenants = scopedTenants(q.tenants);
  if (!q.tenant.empty()) {
    if (tenants && std::find(tenants->begin(), tenants->end(), q.tenant) == tenants->end()) {
      return out; // outside the scope: nothing to see
    }
    tenants = std::vector<std::string>{q.tenant};
  }
  if (tenants && tenants->empty()) {
    return out;
  }
  std::vector<std::string> states;
  if (q.state) {
    states.emplace_back(toString(*q.state));
  } else {
    for (auto s : {relay::MessageState::kQueued, relay::MessageState::kSending,
                   relay::MessageState::kDeferred, relay::MessageState::kSent,
                   relay::MessageState::kFailed}) {
      states.emplace_back(toString(s));
    }
  }

  // The ranges: each one the equality values of the shape's prefix, in column order.
  Shape shape = kById;
  std::vector<std::vector<std::string>> ranges;
  const size_t cap = kMaxListRanges;
  const auto addStates = [&](const std::vector<std::string>& prefix) {
    for (const auto& s : states) {
      auto values = prefix;
      values.push_back(s);
      ranges.push_back(std::move(values));
    }
  };
  const auto routesOf = [&](Distinct which, const std::vector<std::string>& prefix,
                            std::vector<std::string>& routes) -> Result<void> {
    if (!q.route.empty()) {
      routes = {q.route};
      return {};
    }
    return distinct(which, prefix, cap, routes);
  };
  if (!q.mailbox.empty()) {
    shape = kByMailbox;
    std::vector<std::string> in_mailbox;
    if (tenants) {
      in_mailbox = *tenants;
    } else if (auto r = distinct(kMailboxTenants, {q.mailbox}, cap, in_mailbox); !r) {
      return std::unexpected(std::move(r.error()));
    }
    for (const auto& t : in_mailbox) {
      std::vector<std::string> routes;
      if (auto r = routesOf(kMailboxTenantRoutes, {q.mailbox, t}, routes); !r) {
        return std::unexpected(std::move(r.error()));
      }
      for (const auto& route : routes) {
        addStates({q.mailbox, t, route});
      }
      if (ranges.size() > cap) {
        break;
      }
    }
  } else if (tenants) {
    shape = kByTenant;
    for (const auto& t : *tenants) {
      std::vector<std::string> routes;
      if (auto r = routesOf(kTenantRoutes, {t}, routes); !r) {
        return std::unexpected(std::move(r.error()));
      }
      for (const auto& route : routes) {
        addStates({t, route});
      }
      if (ranges.size() > cap) {
        break;
      }
    }
  } else if (!q.route.empty()) {
    shape = kByRoute;
    addStates({q.route});
  } else if (q.state) {
    shape = kByRoute;
    std::vector<std::string> routes;
    if (auto r = distinct(kRoutes, {}, cap, routes); !r) {
      return std::unexpected(std::move(r.error()));
    }
    for (const auto& route : routes) {
      addStates({route});
    }
  } else {
    ranges.emplace_back();
  }
  if (ranges.size() > cap) {
    return fail("store.invalid",
                fmt::format("this listing would merge more than {} index ranges", cap),
                "filter by state or route, or list fewer tenants at a time");
  }
  if (ranges.empty()) {
    return out;
  }

  // Merge the ranges by id: one open cursor per range, the next id of each in a heap.
  auto pool = cursors(shape, q.newest_first, ranges.size());
  if (!pool) {
    return std::unexpected(std::move(pool.error()));
  }
  std::vector<Statement>& cs = **pool;
  struct Reset {
    std::vector<Statement>& cs;
    size_t used;
    ~Reset() {
      for (size_t i = 0; i < used; ++i) {
        cs[i].reset();
      }
      if (cs.size() > kKeptCursors) {
        cs.resize(kKeptCursors);
      }
    }
  } reset{cs, ranges.size()};

  const bool desc = q.newest_first;
  const std::string_view after = !q.after.empty() ? std::string_view(q.after)
                                 : desc           ? kAfterEveryId
                                                  : std::string_view("");
  struct Head {
    std::string id;
    size_t range;
  };
  // The heap's top is the id that comes first in the listing's order.
  const auto comesLater = [desc](const Head& a, const Head& b) {
    return desc ? a.id < b.id : a.id > b.id;
  };
  std::vector<Head> heap;
  heap.reserve(ranges.size());
  const auto advance = [&](size_t i) -> Result<void> {
    auto row = cs[i].step();
    if (!row) {
      return std::unexpected(std::move(row.error()));
    }
    if (*row) {
      heap.push_back(Head{cs[i].text(0), i});
      std::push_heap(heap.begin(), heap.end(), comesLater);
    }
    return {};
  };
  for (size_t i = 0; i < ranges.size(); ++i) {
    bindAll(cs[i], ranges[i]);
    cs[i].bind(static_cast<int>(ranges[i].size()) + 1, after);
    if (auto r = advance(i); !r) {
      return std::unexpected(std::move(r.error()));
    }
  }
  while (!heap.empty()) {
    if (out.ids.size() == limit) {
      out.more = true;
      break;
    }
    std::pop_heap(heap.begin(), heap.end(), comesLater);
    Head top = std::move(heap.back());
    heap.pop_back();
    out.ids.push_back(std::move(top.id));
    if (auto r = advance(top.range); !r) {
      return std::unexpected(std::move(r.error()));
    }
  }
  return out;
}

} // namespace mailgate::store
