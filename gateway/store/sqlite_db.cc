#include "gateway/store/sqlite_db.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <sqlite3.h>
#include <unistd.h>

namespace mailgate::store {

Error sqliteError(int rc, std::string_view what, sqlite3* db) {
  // sqlite3_errmsg describes the most recent failure on this connection; it can be more precise
  // than the code's generic text ("database or disk is full", "disk I/O error", ...).
  const char* detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string message = fmt::format("{}: {} (sqlite code {})", what, detail, rc);
  switch (rc & 0xff) {
  case SQLITE_FULL:
    return {"store.full", std::move(message),
            "free disk space under node.data_dir (or raise the store size cap); the message "
            "was not accepted and the client may retry"};
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return {"store.busy", std::move(message),
            "another process holds the database lock; do not write to mailgate.db while "
            "mailgated runs"};
  default:
    return {"store.io", std::move(message),
            "check the disk and file system that hold node.data_dir"};
  }
}

void Statement::Finalize::operator()(sqlite3_stmt* s) const {
  sqlite3_finalize(s);
}

Statement& Statement::bind(int index, std::string_view text) {
  // A default-constructed view has a null pointer, which SQLite would store as NULL: every
  // text column is NOT NULL, so an empty value is bound as ''.
  sqlite3_bind_text64(stmt_.get(), index, text.data() != nullptr ? text.data() : "", text.size(),
                      SQLITE_STATIC, SQLITE_UTF8);
  return *this;
}

Statement& Statement::bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_.get(), index, value);
  return *this;
}

Statement& Statement::bindBlob(int index, std::string_view bytes) {
  // A zero-length blob still needs a non-null pointer, or SQLite stores NULL.
  static const char kEmpty = 0;
  sqlite3_bind_blob64(stmt_.get(), index, bytes.empty() ? &kEmpty : bytes.data(), bytes.size(),
                      SQLITE_STATIC);
  return *this;
}

Result<bool> Statement::step() {
  const int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  return std::unexpected(sqliteError(rc, "statement", db_));
}

Result<void> Statement::run() {
  for (;;) {
    auto row = step();
    if (!row) {
      return std::unexpected(std::move(row.error()));
    }
    if (!*row) {
      return {};
    }
  }
}

int64_t Statement::int64(int column) const {
  return sqlite3_column_int64(stmt_.get(), column);
}

std::string Statement::text(int column) const {
  const auto* p = sqlite3_column_text(stmt_.get(), column);
  const int n = sqlite3_column_bytes(stmt_.get(), column);
  return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), n);
}

std::string Statement::blob(int column) const {
  const void* p = sqlite3_column_blob(stmt_.get(), column);
  const int n = sqlite3_column_bytes(stmt_.get(), column);
  return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), n);
}

void Statement::reset() {
  if (stmt_) {
    sqlite3_reset(stmt_.get());
    sqlite3_clear_bindings(stmt_.get());
  }
}

void SqliteDb::Close::operator()(sqlite3* db) const {
  sqlite3_close_v2(db);
}

Result<SqliteDb> SqliteDb::open(const std::string& path) {
  // Create the file ourselves so it is private from the first byte; SQLite gives the -wal and
  // -shm files the permissions of the main file.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return fail("store.io", fmt::format("cannot open {}: {}", path, std::strerror(errno)),
                "check that node.data_dir is writable by mailgated");
  }
  ::close(fd);

  sqlite3* raw = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  SqliteDb db;
  db.db_.reset(raw); // sqlite3_open_v2 may return a handle even on failure; it must be closed
  if (rc != SQLITE_OK) {
    return std::unexpected(sqliteError(rc, fmt::format("open {}", path), raw));
  }
  sqlite3_extended_result_codes(raw, 1);
  return db;
}

Result<void> SqliteDb::exec(std::string_view sql) {
  const std::string copy(sql); // sqlite3_exec needs a terminated string
  char* err = nullptr;
  const int rc = sqlite3_exec(db_.get(), copy.c_str(), nullptr, nullptr, &err);
  sqlite3_free(err); // the same text is available from sqlite3_errmsg
  if (rc != SQLITE_OK) {
    return std::unexpected(sqliteError(rc, "exec", db_.get()));
  }
  return {};
}

Result<Statement> SqliteDb::prepare(std::string_view sql) {
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(raw);
    return std::unexpected(sqliteError(rc, "prepare", db_.get()));
  }
  return Statement(raw, db_.get());
}

Result<std::string> SqliteDb::queryText(std::string_view sql) {
  auto stmt = prepare(sql);
  if (!stmt) {
    return std::unexpected(std::move(stmt.error()));
  }
  auto row = stmt->step();
  if (!row) {
    return std::unexpected(std::move(row.error()));
  }
  return *row ? stmt->text(0) : std::string();
}

int64_t SqliteDb::lastInsertRowid() const {
  return sqlite3_last_insert_rowid(db_.get());
}

int SqliteDb::changes() const {
  return sqlite3_changes(db_.get());
}

int64_t SqliteDb::totalChanges() const {
  return sqlite3_total_changes64(db_.get());
}

bool SqliteDb::autocommit() const {
  return sqlite3_get_autocommit(db_.get()) != 0;
}

} // namespace mailgate::store
