// The store's schema and its migrations. Each migration runs once, in its own transaction, and
// is recorded in schema_migrations; a database written by a newer mailgate is refused rather
// than guessed at.
#pragma once

#include "base/error.h"
#include "gateway/store/sqlite_db.h"

#include <cstdint>

namespace mailgate::store {

// The version this build writes: the highest migration it knows.
[[nodiscard]] int schemaVersion();

// Applies every missing migration. Errors: "store.schema" for a newer database, else the
// SQLite error (store.io, store.full, store.busy).
[[nodiscard]] Result<void> migrateSchema(SqliteDb& db, int64_t now_ms);

// Applies the missing migrations up to `up_to_version` only: how tests make a database as an
// older mailgated left it.
[[nodiscard]] Result<void> migrateSchema(SqliteDb& db, int64_t now_ms, int up_to_version);

} // namespace mailgate::store
