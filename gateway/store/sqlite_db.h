// A thin RAII layer over one SQLite connection and its prepared statements. Not thread-safe: a
// connection and its statements belong to one thread at a time (the store's storage thread).
#pragma once

#include "base/error.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace mailgate::store {

// Turns an SQLite result code into a store error: SQLITE_FULL → "store.full", BUSY/LOCKED →
// "store.busy", everything else → "store.io". `what` says which step failed.
[[nodiscard]] Error sqliteError(int rc, std::string_view what, sqlite3* db);

class Statement {
public:
  Statement() = default;

  // Bound text and blobs are NOT copied: they must stay alive until reset() (SQLITE_STATIC).
  Statement& bind(int index, std::string_view text);
  Statement& bind(int index, int64_t value);
  Statement& bindBlob(int index, std::string_view bytes);

  // true: a row is ready; false: done. An error leaves the statement needing reset().
  [[nodiscard]] Result<bool> step();
  // step() for statements that return no rows (or whose rows are ignored).
  [[nodiscard]] Result<void> run();

  [[nodiscard]] int64_t int64(int column) const;
  [[nodiscard]] std::string text(int column) const;
  [[nodiscard]] std::string blob(int column) const;

  // Ends the current execution and clears bindings, so no dangling pointer stays bound.
  void reset();

  [[nodiscard]] bool valid() const { return stmt_ != nullptr; }

private:
  friend class SqliteDb;
  struct Finalize {
    void operator()(sqlite3_stmt* s) const;
  };
  Statement(sqlite3_stmt* stmt, sqlite3* db) : stmt_(stmt), db_(db) {}

  std::unique_ptr<sqlite3_stmt, Finalize> stmt_;
  sqlite3* db_ = nullptr;
};

// Resets a statement when the scope ends, whatever path leaves it.
class StatementScope {
public:
  explicit StatementScope(Statement& s) : s_(s) {}
  StatementScope(const StatementScope&) = delete;
  StatementScope& operator=(const StatementScope&) = delete;
  ~StatementScope() { s_.reset(); }

private:
  Statement& s_;
};

class SqliteDb {
public:
  // Opens (creating if needed) the database file read-write. The file is created 0600 first:
  // it holds mail.
  [[nodiscard]] static Result<SqliteDb> open(const std::string& path);

  SqliteDb() = default;

  // Runs one or more statements that return nothing of interest (DDL, PRAGMA, BEGIN...).
  [[nodiscard]] Result<void> exec(std::string_view sql);
  [[nodiscard]] Result<Statement> prepare(std::string_view sql);
  // A single-row, single-column query (PRAGMA values).
  [[nodiscard]] Result<std::string> queryText(std::string_view sql);

  [[nodiscard]] int64_t lastInsertRowid() const;
  [[nodiscard]] int changes() const;
  [[nodiscard]] int64_t totalChanges() const;
  // False while a transaction is open. SQLite may roll a transaction back by itself after
  // SQLITE_FULL or an I/O error; this is how callers notice.
  [[nodiscard]] bool autocommit() const;

  [[nodiscard]] sqlite3* handle() const { return db_.get(); }

private:
  struct Close {
    void operator()(sqlite3* db) const;
  };
  std::unique_ptr<sqlite3, Close> db_;
};

} // namespace mailgate::store
