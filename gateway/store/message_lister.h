// The ids of one page of GET /v1/queue, read from index ranges only (schema migration 3).
//
// How a page stays O(limit) on any queue size: every filter is an equality on a prefix of one
// index that ends in id, so each combination of prefix values is one range already in id order.
// A prefix column the query does not filter is enumerated: state has five values; tenants come
// from the scope, or (within one mailbox) from a skip scan; routes from a skip scan (each
// distinct value costs one index seek, and there are few: microsoft365 and the relay names).
// The ranges are then merged by id with one cursor each, so a page reads at most
// limit + ranges index entries, plus one seek per range and per enumerated value.
//
//   filters (after scope)           index                                ranges
//   none                            primary key (id)                     1
//   state                           messages_by_route (route, state)     routes
//   route [+ state]                 messages_by_route                    states
//   tenant(s) [+ route] [+ state]   messages_by_tenant (tenant, route,   tenants x routes x states
//                                   state)
//   mailbox [+ anything]            messages_by_mailbox (mailbox NOCASE, tenants x routes x states
//                                   tenant, route, state)                (of that mailbox)
//
// Not thread-safe: belongs to QueueTables and its connection (the storage thread), and runs
// inside the caller's transaction.
#pragma once

#include "base/error.h"
#include "gateway/store/message_queries.h"
#include "gateway/store/sqlite_db.h"

#include <array>
#include <string>
#include <vector>

namespace mailgate::store {

class MessageLister {
public:
  // Prepares the statements it always needs; `db` must outlive the lister.
  [[nodiscard]] static Result<MessageLister> create(SqliteDb& db);

  struct Ids {
    std::vector<std::string> ids; // at most the query's (clamped) limit, in the query's order
    bool more = false;            // a further message matches
  };
  // Errors: store.invalid (more than kMaxListRanges ranges), SQLite errors.
  [[nodiscard]] Result<Ids> page(const MessageQuery& q);

  // Every statement text the lister prepares: tests run EXPLAIN QUERY PLAN on each.
  [[nodiscard]] static std::vector<std::string> sqlTexts();

private:
  enum Shape { kById, kByRoute, kByTenant, kByMailbox, kShapes };
  // An enumeration of one column's distinct values within an equality prefix.
  enum Distinct { kRoutes, kTenantRoutes, kMailboxTenants, kMailboxTenantRoutes, kDistincts };

  explicit MessageLister(SqliteDb& db) : db_(&db) {}

  // Appends the distinct values of `which` within `prefix` (bound in order) to `out`, stopping
  // once out holds more than `cap`.
  Result<void> distinct(Distinct which, const std::vector<std::string>& prefix, size_t cap,
                        std::vector<std::string>& out);
  // At least `count` cursor statements of a shape and direction, prepared on first use.
  Result<std::vector<Statement>*> cursors(Shape shape, bool descending, size_t count);

  SqliteDb* db_;
  std::array<Statement, kDistincts> first_{}; // the smallest value
  std::array<Statement, kDistincts> next_{};  // the next value after ?N
  std::array<std::vector<Statement>, kShapes * 2> cursors_{};
};

} // namespace mailgate::store
