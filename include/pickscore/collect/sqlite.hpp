// pickscore/collect/sqlite.hpp — a thin RAII layer over SQLite 3 for the collection server.
// pickscore-requires: pickscore::collect
//
//   collect::Database db("votes.db");                       // opens (creates) the file, WAL mode
//   auto st = db.prepare("SELECT id FROM users WHERE email = ?1");
//   st.bind(1, email);                                      // every value goes in as a bound parameter
//   while (st.step()) use(st.int64(0));
//   { collect::Transaction tx(db); ...; tx.commit(); }      // BEGIN IMMEDIATE; rolls back unless committed
//
// Values only ever reach SQL as bound parameters (`bind`); SQL text is fixed in the source. Errors
// are pickscore::IoError naming the statement and SQLite's message; a violated UNIQUE / CHECK /
// FOREIGN KEY constraint is a ConstraintError (a subclass) so that callers can tell a duplicate
// from a failure.
//
// Durability. The database runs in WAL mode. With synchronous = FULL (the default here) every
// commit fsyncs the write-ahead log before COMMIT returns, so an acknowledged transaction survives
// both a killed process and a power cut. synchronous = NORMAL skips that fsync: a commit still
// reaches the operating system (write(2)) before COMMIT returns, so it survives SIGKILL of the
// process — the kernel holds the page — but a power cut may lose the last transactions. The server
// acknowledges a vote only after COMMIT has returned, so with either setting a killed server loses
// no acknowledged vote; FULL additionally covers the machine going down.
// A Database object is not thread-safe: guard it with a mutex (the server does) or use one per thread.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "../core/error.hpp"

namespace pickscore::collect {

// A violated constraint (UNIQUE, CHECK, NOT NULL, FOREIGN KEY).
class ConstraintError : public IoError {
public:
    using IoError::IoError;
};

enum class Synchronous { normal, full };

class Statement {
public:
    Statement() = default;
    Statement(sqlite3* db, std::string_view sql) : db_(db), sql_(sql) {
        const int rc = sqlite3_prepare_v3(db, sql.data(), int(sql.size()), 0, &st_, nullptr);
        if (rc != SQLITE_OK) fail<IoError>("sqlite: cannot prepare \"", sql, "\": ", sqlite3_errmsg(db));
    }
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;
    Statement(Statement&& o) noexcept : db_(o.db_), st_(std::exchange(o.st_, nullptr)), sql_(std::move(o.sql_)) {}
    Statement& operator=(Statement&& o) noexcept {
        if (this != &o) {
            sqlite3_finalize(st_);
            db_ = o.db_;
            st_ = std::exchange(o.st_, nullptr);
            sql_ = std::move(o.sql_);
        }
        return *this;
    }
    ~Statement() { sqlite3_finalize(st_); }

    Statement& bind(int i, std::int64_t v) { return check_bind(sqlite3_bind_int64(st_, i, v), i); }
    Statement& bind(int i, int v) { return bind(i, std::int64_t(v)); }
    Statement& bind(int i, bool v) { return bind(i, std::int64_t(v ? 1 : 0)); }
    Statement& bind(int i, double v) { return check_bind(sqlite3_bind_double(st_, i, v), i); }
    Statement& bind(int i, std::string_view v) {
        return check_bind(sqlite3_bind_text64(st_, i, v.data(), sqlite3_uint64(v.size()), SQLITE_TRANSIENT, SQLITE_UTF8), i);
    }
    Statement& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
    Statement& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
    Statement& bind(int i, std::nullptr_t) { return check_bind(sqlite3_bind_null(st_, i), i); }
    template <class T>
    Statement& bind(int i, const std::optional<T>& v) {
        return v ? bind(i, *v) : bind(i, nullptr);
    }
    // Binds the arguments to ?1, ?2, ... in order.
    template <class... A>
    Statement& bind_all(const A&... a) {
        int i = 0;
        (bind(++i, a), ...);
        return *this;
    }

    // Runs one step: true when a row is available, false when done.
    bool step() {
        const int rc = sqlite3_step(st_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        const int ext = sqlite3_extended_errcode(db_);
        const std::string msg = sqlite3_errmsg(db_);
        sqlite3_reset(st_);
        if ((ext & 0xff) == SQLITE_CONSTRAINT) fail<ConstraintError>("sqlite: constraint failed in \"", sql_, "\": ", msg);
        fail<IoError>("sqlite: \"", sql_, "\" failed: ", msg);
    }
    // Runs the statement to completion (for INSERT/UPDATE/DELETE); returns the rows it changed.
    int run() {
        while (step()) {
        }
        const int n = sqlite3_changes(db_);
        reset();
        return n;
    }
    void reset() {
        sqlite3_reset(st_);
        sqlite3_clear_bindings(st_);
    }

    bool is_null(int col) const { return sqlite3_column_type(st_, col) == SQLITE_NULL; }
    std::int64_t int64(int col) const { return sqlite3_column_int64(st_, col); }
    double real(int col) const { return sqlite3_column_double(st_, col); }
    std::string text(int col) const {
        const unsigned char* p = sqlite3_column_text(st_, col);
        return p ? std::string(reinterpret_cast<const char*>(p), std::size_t(sqlite3_column_bytes(st_, col))) : std::string();
    }
    std::optional<std::int64_t> opt_int64(int col) const {
        return is_null(col) ? std::nullopt : std::optional<std::int64_t>(int64(col));
    }
    std::optional<double> opt_real(int col) const {
        return is_null(col) ? std::nullopt : std::optional<double>(real(col));
    }

private:
    Statement& check_bind(int rc, int i) {
        if (rc != SQLITE_OK) fail<IoError>("sqlite: cannot bind parameter ", i, " of \"", sql_, "\": ", sqlite3_errmsg(db_));
        return *this;
    }
    sqlite3* db_ = nullptr;
    sqlite3_stmt* st_ = nullptr;
    std::string sql_;
};

class Database {
public:
    // Opens (creating when absent) the database file in WAL mode with foreign keys on.
    // busy_timeout_ms: how long a statement waits for another process's lock (an export running
    // beside the server) before failing with SQLITE_BUSY.
    explicit Database(const std::filesystem::path& file, Synchronous sync = Synchronous::full,
                      bool read_only = false, int busy_timeout_ms = 10000)
        : path_(file) {
        const int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
        const int rc = sqlite3_open_v2(file.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr);
        if (rc != SQLITE_OK) {
            const std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
            sqlite3_close_v2(db_);
            db_ = nullptr;
            fail<IoError>("sqlite: cannot open '", file.string(), "': ", msg);
        }
        sqlite3_extended_result_codes(db_, 1);
        sqlite3_busy_timeout(db_, busy_timeout_ms);
        if (!read_only) {
            Statement wal(db_, "PRAGMA journal_mode = WAL");
            const bool got = wal.step();
            const std::string mode = got ? wal.text(0) : std::string();
            wal = Statement();
            require<IoError>(mode == "wal", "sqlite: '", file.string(), "' cannot use WAL mode (journal_mode is '", mode, "')");
            exec(sync == Synchronous::full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
        }
        exec("PRAGMA foreign_keys = ON");
    }
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;
    ~Database() {
        if (db_) sqlite3_close_v2(db_);
    }

    // Runs SQL without parameters (schema, pragmas). Never pass user data here: use prepare + bind.
    void exec(const char* sql) {
        char* err = nullptr;
        if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
            const std::string msg = err ? err : sqlite3_errmsg(db_);
            sqlite3_free(err);
            fail<IoError>("sqlite: \"", sql, "\" failed: ", msg);
        }
    }
    Statement prepare(std::string_view sql) { return Statement(db_, sql); }
    std::int64_t last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }

    // The single integer a query returns (fallback when it returns no row).
    template <class... A>
    std::int64_t scalar(std::string_view sql, std::int64_t fallback, const A&... args) {
        Statement st = prepare(sql);
        st.bind_all(args...);
        return st.step() && !st.is_null(0) ? st.int64(0) : fallback;
    }

    const std::filesystem::path& path() const { return path_; }
    sqlite3* handle() const { return db_; }

private:
    sqlite3* db_ = nullptr;
    std::filesystem::path path_;
};

// BEGIN IMMEDIATE (takes the write lock at once, so no deadlock-prone lock upgrade); rolls back in the
// destructor unless commit() ran.
class Transaction {
public:
    explicit Transaction(Database& db) : db_(db) { db_.exec("BEGIN IMMEDIATE"); }
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    ~Transaction() {
        if (!done_) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
    void commit() {
        db_.exec("COMMIT");
        done_ = true;
    }

private:
    Database& db_;
    bool done_ = false;
};

}  // namespace pickscore::collect
