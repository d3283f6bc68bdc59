// pickscore/collect/store.hpp — the collection server's database: schema, migrations and every
// pickscore-requires: pickscore::collect
// query the server and the export run. One SQLite file (WAL mode, see sqlite.hpp for durability).
//
// Schema (version 1; PRAGMA user_version holds the version, PRAGMA application_id marks the file as
// ours; a newer file is refused rather than damaged):
//   settings(key, value)                 'secret' (HMAC key for sessions), 'pool_dir', 'created_at'
//   prompts(id, text UNIQUE, origin, created_ms)                         origin: 'pool' | 'generated'
//   images(id, uid UNIQUE, prompt_id, path UNIQUE, generator, sha256, width, height, origin, active,
//          created_ms)                    path relative to the pool folder; uid: 32 hex digits, used in
//                                         URLs (/img/<uid>) and exported as image_{0,1}_uid
//   pairs(id, prompt_id, image_a < image_b, votes)        every two active images of one prompt
//   users(id, name, email UNIQUE, verified, flagged, flag_reason, flag_manual, shows, votes, decided,
//         fast_votes, repeats, repeat_disagreements, last_vote_ms, created_ms)
//   verifications(token_hash, user_id, name, expires_ms, used)          only SHA-256 of the token kept
//   shows(id, user_id, pair_id, left_image, right_image, repeat_of, seq, shown_ms)   one pair as shown
//                                         to one user; repeat_of: the earlier show it repeats, flipped
//   votes(id, show_id UNIQUE, user_id, pair_id, choice, chosen_image, decision_ms, is_repeat,
//         consistent, created_ms)         choice: left | right | tie | skip; at most one vote per show
//   image_scores(image_id, score, model)  PickScore of each image for its prompt (--model)
//
// The quality check. Every `repeat_every`-th pair a user is shown is, when possible, one they already
// voted on (not skipped) at least `repeat_gap` pairs earlier, with the sides swapped; nothing in the
// page or the API tells it apart. Its vote is stored with is_repeat = 1 and consistent = whether it
// picked the same image (or tie) as before. A user is flagged automatically when, after at least
// `min_repeats` answered repeats, more than `max_disagreement` of them disagree, or when, after at
// least `min_votes_for_speed` decided votes, more than `max_fast_fraction` of them came faster than
// `fast_vote_ms`. Decision time = vote time - max(time the pair was served, the user's previous vote),
// which is the time the pair was on screen even when the page fetched it in advance. An admin can
// set or clear the flag by hand (flag_manual), which then overrides the automatic rule.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "../io/json.hpp"
#include "pool.hpp"
#include "security.hpp"
#include "sqlite.hpp"

namespace pickscore::collect {

inline constexpr std::int64_t schema_version = 1;
inline constexpr std::int64_t database_application_id = 0x50436f6c;  // "PCol"

inline std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// "2024-05-01 12:34:56.789" (UTC), Pick-a-Pic's created_at style.
inline std::string format_time_ms(std::int64_t ms) {
    const std::time_t s = std::time_t(ms / 1000);
    std::tm tm{};
    gmtime_r(&s, &tm);
    char buf[48];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d.%03d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, int(ms % 1000));
    return buf;
}

enum class Choice { left, right, tie, skip };

inline const char* to_string(Choice c) {
    switch (c) {
        case Choice::left: return "left";
        case Choice::right: return "right";
        case Choice::tie: return "tie";
        default: return "skip";
    }
}

inline std::optional<Choice> parse_choice(std::string_view s) {
    for (Choice c : {Choice::left, Choice::right, Choice::tie, Choice::skip})
        if (s == to_string(c)) return c;
    return std::nullopt;
}

struct QualityRules {
    int repeat_every = 10;  // 0: no repeats
    int repeat_gap = 3;
    int min_repeats = 3;
    double max_disagreement = 0.5;
    int fast_vote_ms = 500;
    int min_votes_for_speed = 10;
    double max_fast_fraction = 0.5;
};

struct User {
    std::int64_t id = 0;
    std::string name, email;
    bool verified = false, flagged = false;
    std::string flag_reason;
    std::int64_t votes = 0;
};

struct ImageRow {
    std::int64_t id = 0;
    std::string uid;
    std::filesystem::path path;  // relative to the pool
    std::string generator;
    std::int64_t prompt_id = 0;
};

struct Show {
    std::int64_t id = 0;
    std::string prompt;
    ImageRow left, right;
    bool repeat = false;  // never sent to the client
};

enum class VoteStatus { ok, unknown_show, duplicate };

struct VoteResult {
    VoteStatus status = VoteStatus::unknown_show;
    std::int64_t vote_id = 0;
    std::int64_t left_image = 0, right_image = 0;
};

// Checks an image before it joins the pool (decodes it); throws on a bad one. Returns width, height.
using ImageValidator = std::function<std::pair<std::int64_t, std::int64_t>(const std::filesystem::path&)>;

struct ImportReport {
    std::int64_t added = 0, known = 0, rejected = 0, missing = 0, deactivated = 0, prompts = 0, pairs = 0;
    std::vector<std::string> warnings;
};

class Store {
public:
    explicit Store(const std::filesystem::path& file, Synchronous sync = Synchronous::full)
        : db_(file, sync) {
        migrate();
    }

    Database& db() { return db_; }

    std::string setting(std::string_view key) {
        Statement st = db_.prepare("SELECT value FROM settings WHERE key = ?1");
        st.bind(1, key);
        return st.step() ? st.text(0) : std::string();
    }
    void set_setting(std::string_view key, std::string_view value) {
        db_.prepare("INSERT INTO settings(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .bind_all(key, value)
            .run();
    }
    std::string secret() {
        std::string s = setting("secret");
        require(s.size() >= 32, "collect: the database has no session secret");
        return s;
    }

    // ---- the pool ------------------------------------------------------------------------------

    // Adds the scanned images that are new (validated, hashed), re-activates known ones, deactivates
    // pool images that are no longer listed or whose file is gone, and creates the missing pairs.
    ImportReport import_pool(const std::filesystem::path& pool_dir, const PoolScan& scan, const ImageValidator& validate) {
        namespace fs = std::filesystem;
        ImportReport rep;
        rep.warnings = scan.warnings;
        Transaction tx(db_);
        std::set<std::int64_t> seen;
        const std::int64_t now = now_ms();
        for (const PoolEntry& e : scan.entries) {
            const fs::path abs = pool_dir / e.image;
            std::error_code ec;
            if (!fs::is_regular_file(abs, ec)) {
                ++rep.missing;
                rep.warnings.push_back("'" + abs.string() + "' is listed but is not a file");
                continue;
            }
            Statement q = db_.prepare("SELECT id FROM images WHERE path = ?1");
            q.bind(1, e.image.generic_string());
            if (q.step()) {
                seen.insert(q.int64(0));
                ++rep.known;
                continue;
            }
            std::pair<std::int64_t, std::int64_t> wh{0, 0};
            try {
                if (validate) wh = validate(abs);
            } catch (const std::exception& ex) {
                ++rep.rejected;
                rep.warnings.push_back("'" + abs.string() + "' left out: " + ex.what());
                continue;
            }
            const std::int64_t prompt_id = prompt_id_for(e.prompt, "pool", now);
            const std::int64_t id = insert_image(prompt_id, e.image, e.generator, sha256_file_hex(abs), wh, "pool", now);
            seen.insert(id);
            ++rep.added;
        }
        // Pool images not seen this time: their file went away or the manifest dropped them.
        Statement all = db_.prepare("SELECT id, path FROM images WHERE origin = 'pool' AND active = 1");
        std::vector<std::int64_t> gone;
        while (all.step())
            if (!seen.count(all.int64(0))) gone.push_back(all.int64(0));
        for (std::int64_t id : gone) db_.prepare("UPDATE images SET active = 0 WHERE id = ?1").bind(1, id).run();
        rep.deactivated = std::int64_t(gone.size());
        for (std::int64_t id : seen) db_.prepare("UPDATE images SET active = 1 WHERE id = ?1 AND active = 0").bind(1, id).run();
        // Generated images stay as long as their files exist.
        create_pairs();
        tx.commit();
        rep.prompts = db_.scalar(
            "SELECT COUNT(DISTINCT prompt_id) FROM images WHERE active = 1 AND prompt_id IN "
            "(SELECT prompt_id FROM images WHERE active = 1 GROUP BY prompt_id HAVING COUNT(*) >= 2)",
            0);
        rep.pairs = active_pairs();
        return rep;
    }

    // Adds generated images (paths relative to the pool) for a prompt; returns the prompt's id.
    std::int64_t add_generated(const std::string& prompt, const std::vector<PoolEntry>& images, const std::filesystem::path& pool_dir,
                               const ImageValidator& validate, std::vector<std::string>* warnings = nullptr) {
        Transaction tx(db_);
        const std::int64_t now = now_ms();
        const std::int64_t prompt_id = prompt_id_for(prompt, "generated", now);
        for (const PoolEntry& e : images) {
            const std::filesystem::path abs = pool_dir / e.image;
            std::pair<std::int64_t, std::int64_t> wh{0, 0};
            try {
                if (validate) wh = validate(abs);
            } catch (const std::exception& ex) {
                if (warnings) warnings->push_back("'" + abs.string() + "' left out: " + ex.what());
                continue;
            }
            insert_image(prompt_id, e.image, e.generator, sha256_file_hex(abs), wh, "generated", now);
        }
        create_pairs();
        tx.commit();
        return prompt_id;
    }

    std::int64_t active_pairs() {
        return db_.scalar(
            "SELECT COUNT(*) FROM pairs p JOIN images a ON a.id = p.image_a AND a.active = 1 "
            "JOIN images b ON b.id = p.image_b AND b.active = 1",
            0);
    }

    std::optional<ImageRow> image_by_uid(std::string_view uid) {
        Statement st = db_.prepare("SELECT id, uid, path, generator, prompt_id FROM images WHERE uid = ?1 AND active = 1");
        st.bind(1, uid);
        if (!st.step()) return std::nullopt;
        return row_image(st, 0);
    }
    std::optional<ImageRow> image_by_id(std::int64_t id) {
        Statement st = db_.prepare("SELECT id, uid, path, generator, prompt_id FROM images WHERE id = ?1");
        st.bind(1, id);
        if (!st.step()) return std::nullopt;
        return row_image(st, 0);
    }
    std::string prompt_text(std::int64_t prompt_id) {
        Statement st = db_.prepare("SELECT text FROM prompts WHERE id = ?1");
        st.bind(1, prompt_id);
        return st.step() ? st.text(0) : std::string();
    }

    // ---- people --------------------------------------------------------------------------------

    // Starts a sign-in: the user (created when new, unverified) and a fresh verification token
    // (returned; only its hash is stored) valid for ttl_ms.
    std::pair<std::int64_t, std::string> begin_signin(const std::string& name, const std::string& email, std::int64_t ttl_ms) {
        Transaction tx(db_);
        const std::int64_t now = now_ms();
        std::int64_t user = db_.scalar("SELECT id FROM users WHERE email = ?1", 0, email);
        if (!user) {
            db_.prepare("INSERT INTO users(name, email, created_ms) VALUES (?1, ?2, ?3)").bind_all(name, email, now).run();
            user = db_.last_insert_rowid();
        }
        const std::string token = random_hex(32);
        db_.prepare("INSERT INTO verifications(token_hash, user_id, name, expires_ms) VALUES (?1, ?2, ?3, ?4)")
            .bind_all(sha256_hex(token), user, name, now + ttl_ms)
            .run();
        db_.prepare("DELETE FROM verifications WHERE expires_ms < ?1").bind(1, now).run();
        tx.commit();
        return {user, token};
    }

    // Completes a sign-in: the user id when the token is known, unused and not expired (it is then
    // used up, the user verified and named as they asked).
    std::optional<std::int64_t> finish_signin(std::string_view token) {
        Transaction tx(db_);
        Statement st = db_.prepare("SELECT user_id, name, expires_ms, used FROM verifications WHERE token_hash = ?1");
        st.bind(1, sha256_hex(token));
        if (!st.step()) return std::nullopt;
        const std::int64_t user = st.int64(0), expires = st.int64(2), used = st.int64(3);
        const std::string name = st.text(1);
        st = Statement();
        const std::int64_t now = now_ms();
        if (used || expires < now) return std::nullopt;
        db_.prepare("UPDATE verifications SET used = 1 WHERE token_hash = ?1").bind(1, sha256_hex(token)).run();
        db_.prepare("UPDATE users SET verified = 1, name = ?2, verified_ms = COALESCE(verified_ms, ?3) WHERE id = ?1")
            .bind_all(user, name, now)
            .run();
        tx.commit();
        return user;
    }

    std::optional<User> user(std::int64_t id) {
        Statement st = db_.prepare("SELECT id, name, email, verified, flagged, flag_reason, votes FROM users WHERE id = ?1");
        st.bind(1, id);
        if (!st.step()) return std::nullopt;
        User u;
        u.id = st.int64(0);
        u.name = st.text(1);
        u.email = st.text(2);
        u.verified = st.int64(3) != 0;
        u.flagged = st.int64(4) != 0;
        u.flag_reason = st.text(5);
        u.votes = st.int64(6);
        return u;
    }

    // An admin's decision: flagged true/false, or nullopt to return to the automatic rule.
    bool set_manual_flag(std::int64_t user_id, std::optional<bool> flagged, const QualityRules& rules) {
        Transaction tx(db_);
        const int n = db_.prepare("UPDATE users SET flag_manual = ?2 WHERE id = ?1")
                          .bind(1, user_id)
                          .bind(2, flagged ? std::optional<std::int64_t>(*flagged ? 1 : 0) : std::nullopt)
                          .run();
        if (n) update_flag(user_id, rules);
        tx.commit();
        return n > 0;
    }

    // ---- showing pairs and voting ----------------------------------------------------------------

    // The next pair for a user (a hidden repeat every rules.repeat_every-th time), recorded as shown;
    // nullopt when the user has seen every pair. prefer_prompt: a prompt to take the pair from when
    // it has one left (the one just generated).
    std::optional<Show> next_show(std::int64_t user_id, const QualityRules& rules, std::optional<std::int64_t> prefer_prompt = {}) {
        Transaction tx(db_);
        const std::int64_t seq = db_.scalar("SELECT shows FROM users WHERE id = ?1", 0, user_id) + 1;
        std::int64_t pair = 0, left = 0, right = 0;
        std::optional<std::int64_t> repeat_of;
        if (rules.repeat_every > 0 && seq % rules.repeat_every == 0 && !prefer_prompt) {
            Statement st = db_.prepare(
                "SELECT s.id, s.pair_id, s.left_image, s.right_image FROM shows s "
                "JOIN votes v ON v.show_id = s.id "
                "JOIN images a ON a.id = s.left_image AND a.active = 1 "
                "JOIN images b ON b.id = s.right_image AND b.active = 1 "
                "WHERE s.user_id = ?1 AND s.repeat_of IS NULL AND v.choice != 'skip' AND s.seq <= ?2 "
                "AND NOT EXISTS (SELECT 1 FROM shows r WHERE r.repeat_of = s.id) "
                "ORDER BY random() LIMIT 1");
            st.bind_all(user_id, seq - rules.repeat_gap);
            if (st.step()) {
                repeat_of = st.int64(0);
                pair = st.int64(1);
                left = st.int64(3);  // swapped
                right = st.int64(2);
            }
        }
        if (!repeat_of) {
            Statement st = db_.prepare(
                "SELECT p.id, p.image_a, p.image_b, abs(random() % 2) FROM pairs p "
                "JOIN images a ON a.id = p.image_a AND a.active = 1 "
                "JOIN images b ON b.id = p.image_b AND b.active = 1 "
                "WHERE NOT EXISTS (SELECT 1 FROM shows s WHERE s.user_id = ?1 AND s.pair_id = p.id) "
                "AND (?2 IS NULL OR p.prompt_id = ?2) "
                "ORDER BY p.votes, random() LIMIT 1");
            st.bind(1, user_id).bind(2, prefer_prompt);
            if (!st.step()) {
                if (prefer_prompt) {
                    st = Statement();
                    tx.commit();
                    return next_show(user_id, rules, std::nullopt);
                }
                return std::nullopt;
            }
            pair = st.int64(0);
            const bool flip = st.int64(3) != 0;
            left = flip ? st.int64(2) : st.int64(1);
            right = flip ? st.int64(1) : st.int64(2);
        }
        db_.prepare("INSERT INTO shows(user_id, pair_id, left_image, right_image, repeat_of, seq, shown_ms) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
            .bind_all(user_id, pair, left, right, repeat_of, seq, now_ms())
            .run();
        Show s;
        s.id = db_.last_insert_rowid();
        db_.prepare("UPDATE users SET shows = ?2 WHERE id = ?1").bind_all(user_id, seq).run();
        s.left = *image_by_id(left);
        s.right = *image_by_id(right);
        s.prompt = prompt_text(s.left.prompt_id);
        s.repeat = repeat_of.has_value();
        tx.commit();
        return s;
    }

    // Records a user's vote on a show of theirs. unknown_show for a show that does not exist or
    // belongs to someone else; duplicate when it already has a vote. Committed before returning.
    VoteResult record_vote(std::int64_t user_id, std::int64_t show_id, Choice choice, const QualityRules& rules) {
        Transaction tx(db_);
        VoteResult res;
        Statement st = db_.prepare("SELECT user_id, pair_id, left_image, right_image, repeat_of, shown_ms FROM shows WHERE id = ?1");
        st.bind(1, show_id);
        if (!st.step() || st.int64(0) != user_id) return res;  // unknown_show (rolled back: nothing written)
        const std::int64_t pair = st.int64(1);
        res.left_image = st.int64(2);
        res.right_image = st.int64(3);
        const std::optional<std::int64_t> repeat_of = st.opt_int64(4);
        const std::int64_t shown_ms = st.int64(5);
        st = Statement();
        if (db_.scalar("SELECT COUNT(*) FROM votes WHERE show_id = ?1", 0, show_id) > 0) {
            res.status = VoteStatus::duplicate;
            return res;
        }
        const std::int64_t now = now_ms();
        const std::int64_t last_vote = db_.scalar("SELECT last_vote_ms FROM users WHERE id = ?1", 0, user_id);
        const std::int64_t decision_ms = std::max<std::int64_t>(0, now - std::max(shown_ms, last_vote));
        std::optional<std::int64_t> chosen;
        if (choice == Choice::left) chosen = res.left_image;
        if (choice == Choice::right) chosen = res.right_image;
        std::optional<std::int64_t> consistent;
        if (repeat_of && choice != Choice::skip) {
            Statement o = db_.prepare("SELECT choice, chosen_image FROM votes WHERE show_id = ?1");
            o.bind(1, *repeat_of);
            if (o.step() && o.text(0) != "skip") {
                const std::optional<std::int64_t> before = o.opt_int64(1);
                consistent = before == chosen ? 1 : 0;
            }
        }
        db_.prepare("INSERT INTO votes(show_id, user_id, pair_id, choice, chosen_image, decision_ms, is_repeat, consistent, created_ms) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
            .bind_all(show_id, user_id, pair, to_string(choice), chosen, decision_ms, repeat_of.has_value(), consistent, now)
            .run();
        res.vote_id = db_.last_insert_rowid();
        if (!repeat_of && choice != Choice::skip) db_.prepare("UPDATE pairs SET votes = votes + 1 WHERE id = ?1").bind(1, pair).run();
        const bool decided = choice != Choice::skip;
        db_.prepare("UPDATE users SET votes = votes + 1, decided = decided + ?2, fast_votes = fast_votes + ?3, "
                    "repeats = repeats + ?4, repeat_disagreements = repeat_disagreements + ?5, last_vote_ms = ?6 WHERE id = ?1")
            .bind_all(user_id, decided ? 1 : 0, decided && decision_ms < rules.fast_vote_ms ? 1 : 0, consistent ? 1 : 0,
                      consistent && *consistent == 0 ? 1 : 0, now)
            .run();
        update_flag(user_id, rules);
        tx.commit();
        res.status = VoteStatus::ok;
        return res;
    }

    // ---- PickScore of the pool's images --------------------------------------------------------

    // Active images without a score, grouped by prompt: (prompt, [(image id, path relative to pool)]).
    std::vector<std::pair<std::string, std::vector<std::pair<std::int64_t, std::filesystem::path>>>> images_without_score() {
        Statement st = db_.prepare(
            "SELECT i.prompt_id, p.text, i.id, i.path FROM images i JOIN prompts p ON p.id = i.prompt_id "
            "WHERE i.active = 1 AND NOT EXISTS (SELECT 1 FROM image_scores s WHERE s.image_id = i.id) ORDER BY i.prompt_id, i.id");
        std::vector<std::pair<std::string, std::vector<std::pair<std::int64_t, std::filesystem::path>>>> out;
        std::int64_t last = -1;
        while (st.step()) {
            if (st.int64(0) != last) {
                out.push_back({st.text(1), {}});
                last = st.int64(0);
            }
            out.back().second.push_back({st.int64(2), std::filesystem::path(st.text(3))});
        }
        return out;
    }
    void set_image_score(std::int64_t image_id, double score, std::string_view model) {
        db_.prepare("INSERT OR REPLACE INTO image_scores(image_id, score, model) VALUES (?1, ?2, ?3)").bind_all(image_id, score, model).run();
    }
    std::optional<double> image_score(std::int64_t image_id) {
        Statement st = db_.prepare("SELECT score FROM image_scores WHERE image_id = ?1");
        st.bind(1, image_id);
        return st.step() ? std::optional<double>(st.real(0)) : std::nullopt;
    }

    // ---- the admin page --------------------------------------------------------------------------
    io::Json stats(bool exclude_flagged);

private:
    void migrate();
    void create_pairs() {
        db_.exec(
            "INSERT OR IGNORE INTO pairs(prompt_id, image_a, image_b) "
            "SELECT a.prompt_id, a.id, b.id FROM images a JOIN images b ON a.prompt_id = b.prompt_id AND a.id < b.id");
    }
    std::int64_t prompt_id_for(const std::string& text, const char* origin, std::int64_t now) {
        db_.prepare("INSERT OR IGNORE INTO prompts(text, origin, created_ms) VALUES (?1, ?2, ?3)").bind_all(text, origin, now).run();
        return db_.scalar("SELECT id FROM prompts WHERE text = ?1", 0, text);
    }
    std::int64_t insert_image(std::int64_t prompt_id, const std::filesystem::path& rel, const std::string& generator,
                              const std::string& sha, std::pair<std::int64_t, std::int64_t> wh, const char* origin, std::int64_t now) {
        db_.prepare("INSERT INTO images(uid, prompt_id, path, generator, sha256, width, height, origin, created_ms) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
            .bind_all(random_hex(16), prompt_id, rel.generic_string(), generator, sha, wh.first, wh.second, origin, now)
            .run();
        return db_.last_insert_rowid();
    }
    static ImageRow row_image(const Statement& st, int c) {
        ImageRow r;
        r.id = st.int64(c);
        r.uid = st.text(c + 1);
        r.path = st.text(c + 2);
        r.generator = st.text(c + 3);
        r.prompt_id = st.int64(c + 4);
        return r;
    }
    void update_flag(std::int64_t user_id, const QualityRules& rules) {
        Statement st = db_.prepare("SELECT decided, fast_votes, repeats, repeat_disagreements, flag_manual FROM users WHERE id = ?1");
        st.bind(1, user_id);
        if (!st.step()) return;
        const std::int64_t decided = st.int64(0), fast = st.int64(1), reps = st.int64(2), dis = st.int64(3);
        const std::optional<std::int64_t> manual = st.opt_int64(4);
        st = Statement();
        std::string reason;
        if (reps >= rules.min_repeats && double(dis) > rules.max_disagreement * double(reps))
            reason = "disagreed with themselves on " + std::to_string(dis) + " of " + std::to_string(reps) + " repeated pairs";
        if (decided >= rules.min_votes_for_speed && double(fast) > rules.max_fast_fraction * double(decided)) {
            if (!reason.empty()) reason += "; ";
            reason += std::to_string(fast) + " of " + std::to_string(decided) + " votes faster than " +
                      std::to_string(rules.fast_vote_ms) + " ms";
        }
        bool flagged = !reason.empty();
        if (manual) {
            flagged = *manual != 0;
            reason = flagged ? "flagged by an admin" + (reason.empty() ? std::string() : " (" + reason + ")") : std::string();
        }
        db_.prepare("UPDATE users SET flagged = ?2, flag_reason = ?3 WHERE id = ?1").bind_all(user_id, flagged, reason).run();
    }

    Database db_;
};

// ---- schema --------------------------------------------------------------------------------------

namespace detail {

// Migration k takes a database from version k-1 to k. Append; never edit a released one.
inline const std::vector<const char*>& migrations() {
    static const std::vector<const char*> m = {
        // version 1
        "CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE prompts(id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE,"
        "  origin TEXT NOT NULL CHECK(origin IN ('pool','generated')), created_ms INTEGER NOT NULL);"
        "CREATE TABLE images(id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE, prompt_id INTEGER NOT NULL REFERENCES prompts(id),"
        "  path TEXT NOT NULL UNIQUE, generator TEXT NOT NULL, sha256 TEXT NOT NULL, width INTEGER, height INTEGER,"
        "  origin TEXT NOT NULL CHECK(origin IN ('pool','generated')), active INTEGER NOT NULL DEFAULT 1, created_ms INTEGER NOT NULL);"
        "CREATE INDEX images_prompt ON images(prompt_id);"
        "CREATE TABLE pairs(id INTEGER PRIMARY KEY, prompt_id INTEGER NOT NULL REFERENCES prompts(id),"
        "  image_a INTEGER NOT NULL REFERENCES images(id), image_b INTEGER NOT NULL REFERENCES images(id),"
        "  votes INTEGER NOT NULL DEFAULT 0, UNIQUE(image_a, image_b), CHECK(image_a < image_b));"
        "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE,"
        "  verified INTEGER NOT NULL DEFAULT 0, verified_ms INTEGER, flagged INTEGER NOT NULL DEFAULT 0,"
        "  flag_reason TEXT NOT NULL DEFAULT '', flag_manual INTEGER, shows INTEGER NOT NULL DEFAULT 0,"
        "  votes INTEGER NOT NULL DEFAULT 0, decided INTEGER NOT NULL DEFAULT 0, fast_votes INTEGER NOT NULL DEFAULT 0,"
        "  repeats INTEGER NOT NULL DEFAULT 0, repeat_disagreements INTEGER NOT NULL DEFAULT 0,"
        "  last_vote_ms INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL);"
        "CREATE TABLE verifications(token_hash TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),"
        "  name TEXT NOT NULL, expires_ms INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE shows(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),"
        "  pair_id INTEGER NOT NULL REFERENCES pairs(id), left_image INTEGER NOT NULL REFERENCES images(id),"
        "  right_image INTEGER NOT NULL REFERENCES images(id), repeat_of INTEGER REFERENCES shows(id),"
        "  seq INTEGER NOT NULL, shown_ms INTEGER NOT NULL);"
        "CREATE INDEX shows_user_pair ON shows(user_id, pair_id);"
        "CREATE INDEX shows_repeat_of ON shows(repeat_of);"
        "CREATE TABLE votes(id INTEGER PRIMARY KEY, show_id INTEGER NOT NULL UNIQUE REFERENCES shows(id),"
        "  user_id INTEGER NOT NULL REFERENCES users(id), pair_id INTEGER NOT NULL REFERENCES pairs(id),"
        "  choice TEXT NOT NULL CHECK(choice IN ('left','right','tie','skip')), chosen_image INTEGER REFERENCES images(id),"
        "  decision_ms INTEGER NOT NULL, is_repeat INTEGER NOT NULL, consistent INTEGER, created_ms INTEGER NOT NULL);"
        "CREATE INDEX votes_user ON votes(user_id);"
        "CREATE INDEX votes_pair ON votes(pair_id);"
        "CREATE TABLE image_scores(image_id INTEGER PRIMARY KEY REFERENCES images(id), score REAL NOT NULL, model TEXT NOT NULL);",
    };
    return m;
}

}  // namespace detail

inline void Store::migrate() {
    const std::int64_t version = db_.scalar("PRAGMA user_version", 0);
    const std::int64_t app = db_.scalar("PRAGMA application_id", 0);
    const std::string file = db_.path().string();
    require<FormatError>(app == 0 || app == database_application_id, "collect: '", file,
                         "' is not a pickscore collect database (application_id ", app, ")");
    if (version == 0) {
        require<FormatError>(db_.scalar("SELECT COUNT(*) FROM sqlite_master", 0) == 0, "collect: '", file,
                             "' is an SQLite database of something else (it has tables but no pickscore schema version)");
    } else {
        require<FormatError>(app == database_application_id, "collect: '", file, "' is not a pickscore collect database");
    }
    require<FormatError>(version <= schema_version, "collect: '", file, "' has schema version ", version,
                         ", newer than this program's ", schema_version, ": use a newer pickscore");
    const auto& m = detail::migrations();
    if (version < std::int64_t(m.size())) {
        Transaction tx(db_);
        for (std::int64_t v = version; v < std::int64_t(m.size()); ++v) db_.exec(m[std::size_t(v)]);
        // PRAGMAs take no bound parameters; these are integers of ours, not input.
        db_.exec(("PRAGMA user_version = " + std::to_string(m.size())).c_str());
        db_.exec(("PRAGMA application_id = " + std::to_string(database_application_id)).c_str());
        tx.commit();
    }
    if (setting("secret").empty()) set_setting("secret", random_hex(32));
    if (setting("created_at").empty()) set_setting("created_at", format_time_ms(now_ms()));
}

inline io::Json Store::stats(bool exclude_flagged) {
    using io::Json;
    // Votes that count: not repeats, and (optionally) not from flagged users.
    const char* counted = "v.is_repeat = 0 AND (?1 = 0 OR v.user_id NOT IN (SELECT id FROM users WHERE flagged = 1))";
    Json out = Json::Object{};
    {
        Statement st = db_.prepare(std::string("SELECT COUNT(*), COALESCE(SUM(choice = 'left'), 0), COALESCE(SUM(choice = 'right'), 0), "
                                               "COALESCE(SUM(choice = 'tie'), 0), COALESCE(SUM(choice = 'skip'), 0), COUNT(DISTINCT user_id) "
                                               "FROM votes v WHERE ") + counted);
        st.bind(1, exclude_flagged);
        st.step();
        const std::int64_t decided = st.int64(1) + st.int64(2) + st.int64(3);
        Json t = Json::Object{};
        t.set("votes", st.int64(0));
        t.set("left", st.int64(1));
        t.set("right", st.int64(2));
        t.set("tie", st.int64(3));
        t.set("skip", st.int64(4));
        t.set("voters", st.int64(5));
        t.set("tie_rate", decided ? Json(double(st.int64(3)) / double(decided)) : Json());
        t.set("users", db_.scalar("SELECT COUNT(*) FROM users", 0));
        t.set("verified_users", db_.scalar("SELECT COUNT(*) FROM users WHERE verified = 1", 0));
        t.set("flagged_users", db_.scalar("SELECT COUNT(*) FROM users WHERE flagged = 1", 0));
        t.set("prompts", db_.scalar("SELECT COUNT(DISTINCT prompt_id) FROM images WHERE active = 1", 0));
        t.set("images", db_.scalar("SELECT COUNT(*) FROM images WHERE active = 1", 0));
        t.set("pairs", active_pairs());
        t.set("scored_images", db_.scalar("SELECT COUNT(*) FROM image_scores", 0));
        out.set("totals", std::move(t));
    }
    // Agreement with PickScore: decided (left/right) votes on pairs whose two images have scores.
    const std::string pickscore_agreement =
        std::string("SELECT v.user_id, COUNT(*) AS n, SUM((v.choice = 'left') = (sl.score > sr.score)) AS a FROM votes v "
                    "JOIN shows s ON s.id = v.show_id JOIN image_scores sl ON sl.image_id = s.left_image "
                    "JOIN image_scores sr ON sr.image_id = s.right_image "
                    "WHERE v.choice IN ('left', 'right') AND sl.score != sr.score AND ") + counted + " GROUP BY v.user_id";
    // Agreement between users: every two votes of different users on the same pair (ties included:
    // the same outcome is the same image chosen, or both a tie).
    const std::string between = std::string("WITH d AS (SELECT v.user_id, v.pair_id, COALESCE(v.chosen_image, 0) AS outcome FROM votes v "
                                            "WHERE v.choice != 'skip' AND ") + counted + ") ";
    Json agree = Json::Object{};
    {
        Statement st = db_.prepare("SELECT COALESCE(SUM(n), 0), COALESCE(SUM(a), 0) FROM (" + pickscore_agreement + ")");
        st.bind(1, exclude_flagged);
        st.step();
        const std::int64_t n = st.int64(0), a = st.int64(1);
        Json p = Json::Object{};
        p.set("votes", n);
        p.set("agreement", n ? Json(double(a) / double(n)) : Json());
        agree.set("pickscore", std::move(p));
    }
    {
        Statement st = db_.prepare(between + "SELECT COUNT(*), COALESCE(SUM(x.outcome = y.outcome), 0) FROM d x JOIN d y "
                                             "ON x.pair_id = y.pair_id AND x.user_id < y.user_id");
        st.bind(1, exclude_flagged);
        st.step();
        Json b = Json::Object{};
        b.set("vote_pairs", st.int64(0));
        b.set("agreement", st.int64(0) ? Json(double(st.int64(1)) / double(st.int64(0))) : Json());
        agree.set("between_users", std::move(b));
    }
    out.set("agreement", std::move(agree));
    // Per user.
    {
        std::map<std::int64_t, std::pair<std::int64_t, std::int64_t>> ps, others;
        Statement a = db_.prepare(pickscore_agreement);
        a.bind(1, exclude_flagged);
        while (a.step()) ps[a.int64(0)] = {a.int64(1), a.int64(2)};
        Statement b = db_.prepare(between + "SELECT x.user_id, COUNT(*), SUM(x.outcome = y.outcome) FROM d x JOIN d y "
                                            "ON x.pair_id = y.pair_id AND x.user_id != y.user_id GROUP BY x.user_id");
        b.bind(1, exclude_flagged);
        while (b.step()) others[b.int64(0)] = {b.int64(1), b.int64(2)};
        Statement st = db_.prepare(
            "SELECT u.id, u.name, u.email, u.verified, u.flagged, u.flag_reason, u.flag_manual, u.repeats, u.repeat_disagreements, "
            "u.fast_votes, u.decided, COUNT(v.id), COALESCE(SUM(v.choice = 'left'), 0), COALESCE(SUM(v.choice = 'right'), 0), "
            "COALESCE(SUM(v.choice = 'tie'), 0), COALESCE(SUM(v.choice = 'skip'), 0), "
            "(SELECT CAST(AVG(decision_ms) AS INTEGER) FROM votes w WHERE w.user_id = u.id AND w.choice != 'skip') "
            "FROM users u LEFT JOIN votes v ON v.user_id = u.id AND v.is_repeat = 0 GROUP BY u.id ORDER BY u.id");
        Json users = Json::Array{};
        while (st.step()) {
            Json u = Json::Object{};
            const std::int64_t id = st.int64(0);
            u.set("id", id);
            u.set("name", st.text(1));
            u.set("email", st.text(2));
            u.set("verified", st.int64(3) != 0);
            u.set("flagged", st.int64(4) != 0);
            u.set("flag_reason", st.text(5));
            u.set("flag_manual", st.is_null(6) ? Json() : Json(st.int64(6) != 0));
            u.set("repeats", st.int64(7));
            u.set("repeat_disagreements", st.int64(8));
            u.set("fast_votes", st.int64(9));
            u.set("decided_votes", st.int64(10));
            u.set("votes", st.int64(11));
            u.set("left", st.int64(12));
            u.set("right", st.int64(13));
            u.set("tie", st.int64(14));
            u.set("skip", st.int64(15));
            u.set("mean_decision_ms", st.is_null(16) ? Json() : Json(st.int64(16)));
            const auto p = ps.find(id);
            u.set("pickscore_votes", p == ps.end() ? std::int64_t(0) : p->second.first);
            u.set("pickscore_agreement", p == ps.end() || !p->second.first ? Json() : Json(double(p->second.second) / double(p->second.first)));
            const auto o = others.find(id);
            u.set("shared_vote_pairs", o == others.end() ? std::int64_t(0) : o->second.first);
            u.set("agreement_with_others", o == others.end() || !o->second.first ? Json() : Json(double(o->second.second) / double(o->second.first)));
            users.push_back(std::move(u));
        }
        out.set("users", std::move(users));
    }
    // Per generator: each counted, decided vote is a match between the two images' generators.
    {
        Statement st = db_.prepare(std::string(
            "SELECT g, COUNT(*), SUM(win), SUM(loss), SUM(tie) FROM ("
            " SELECT il.generator AS g, v.choice = 'left' AS win, v.choice = 'right' AS loss, v.choice = 'tie' AS tie"
            " FROM votes v JOIN shows s ON s.id = v.show_id JOIN images il ON il.id = s.left_image WHERE v.choice != 'skip' AND ") +
            counted +
            " UNION ALL"
            " SELECT ir.generator, v.choice = 'right', v.choice = 'left', v.choice = 'tie'"
            " FROM votes v JOIN shows s ON s.id = v.show_id JOIN images ir ON ir.id = s.right_image WHERE v.choice != 'skip' AND " +
            counted + ") GROUP BY g ORDER BY g");
        st.bind(1, exclude_flagged);
        Json gens = Json::Array{};
        std::set<std::string> seen;
        while (st.step()) {
            Json g = Json::Object{};
            const std::int64_t n = st.int64(1), w = st.int64(2), l = st.int64(3), t = st.int64(4);
            g.set("generator", st.text(0));
            seen.insert(st.text(0));
            g.set("comparisons", n);
            g.set("wins", w);
            g.set("losses", l);
            g.set("ties", t);
            g.set("win_rate", n ? Json((double(w) + 0.5 * double(t)) / double(n)) : Json());
            g.set("tie_rate", n ? Json(double(t) / double(n)) : Json());
            gens.push_back(std::move(g));
        }
        Statement all = db_.prepare("SELECT DISTINCT generator FROM images WHERE active = 1 ORDER BY generator");
        while (all.step())
            if (!seen.count(all.text(0))) {
                Json g = Json::Object{};
                g.set("generator", all.text(0));
                g.set("comparisons", std::int64_t(0));
                g.set("wins", std::int64_t(0));
                g.set("losses", std::int64_t(0));
                g.set("ties", std::int64_t(0));
                g.set("win_rate", Json());
                g.set("tie_rate", Json());
                gens.push_back(std::move(g));
            }
        out.set("generators", std::move(gens));
    }
    out.set("exclude_flagged", exclude_flagged);
    return out;
}

}  // namespace pickscore::collect
