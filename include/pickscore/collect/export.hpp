// pickscore/collect/export.hpp — `pickscore collect export`: the collected votes as training data.
// pickscore-requires: pickscore::collect
//
//   collect::ExportReport r = collect::export_preferences({.db = "votes.db", .out = "export/"});
//
// Writes OUT/preferences.jsonl (one JSON object per vote, in vote order) and copies the images it
// names into OUT/images/<uid>.<ext>, so the folder is self-contained: `pickscore train` (and
// data::Dataset, data/dataset.hpp) read it as a JSONL manifest, image paths relative to OUT. Each line
// has the fields of the training manifest and Pick-a-Pic's column names:
//   prompt, caption               the prompt (the same text twice)
//   image_0, image_1              image files, relative to OUT (image_0 = the image shown on the left)
//   image_0_uid, image_1_uid      the images' ids in the collection database (32 hex digits)
//   labels, label_0, label_1      [1, 0] left preferred, [0, 1] right, [0.5, 0.5] tie
//   num_example_per_prompt        the number of lines with this prompt in the file
//   best_image_uid                the preferred image's uid ("" for a tie)
//   model_0, model_1              the generators of image_0 and image_1
//   user_id, ranking_id           the voter's id and the vote's id (integers)
//   created_at                    the vote's time, "YYYY-MM-DD HH:MM:SS.mmm" UTC
//   has_label                     true (skips are not exported)
//   are_different                 whether the two image files differ (SHA-256)
//   split                         "train"
// Left out: skips, the hidden repeats of the quality check (a repeat is a second answer to a pair
// the user already voted on), and with exclude_flagged every vote of a flagged user. The export is
// one read transaction, so it is consistent even while the server keeps taking votes, and the JSONL
// file is written to a temporary name and renamed into place.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "../core/error.hpp"
#include "../io/json.hpp"
#include "pool.hpp"
#include "store.hpp"

namespace pickscore::collect {

struct ExportOptions {
    std::filesystem::path db;
    std::filesystem::path out;
    bool exclude_flagged = false;
    std::filesystem::path pool;  // where the images are; empty: the pool folder the database records
    bool copy_images = true;     // false: image paths are absolute paths into the pool
    std::string file_name = "preferences.jsonl";
};

struct ExportReport {
    std::int64_t rows = 0, prompts = 0, users = 0, images = 0;
    std::int64_t flagged_votes_left_out = 0, skips_left_out = 0, repeats_left_out = 0;
    std::filesystem::path file;
};

inline ExportReport export_preferences(const ExportOptions& opt) {
    namespace fs = std::filesystem;
    std::error_code ec;
    require<IoError>(fs::is_regular_file(opt.db, ec), "collect export: no database '", opt.db.string(), "'");
    require(!opt.out.empty(), "collect export: no output folder");
    Store store(opt.db);
    Database& db = store.db();
    const fs::path pool = opt.pool.empty() ? fs::path(store.setting("pool_dir")) : opt.pool;
    require<IoError>(!pool.empty() && fs::is_directory(pool, ec), "collect export: the pool folder '", pool.string(),
                     "' is not there (give --pool DIR)");

    struct Row {
        std::int64_t vote_id, user_id, created_ms;
        std::string choice, prompt;
        std::string uid[2], path[2], generator[2], sha[2];
    };
    std::vector<Row> rows;
    ExportReport rep;
    {
        db.exec("BEGIN");  // one snapshot for every query below
        struct End {
            Database& db;
            ~End() { sqlite3_exec(db.handle(), "COMMIT", nullptr, nullptr, nullptr); }
        } end{db};
        rep.skips_left_out = db.scalar("SELECT COUNT(*) FROM votes WHERE choice = 'skip' AND is_repeat = 0", 0);
        rep.repeats_left_out = db.scalar("SELECT COUNT(*) FROM votes WHERE is_repeat = 1", 0);
        Statement st = db.prepare(
            "SELECT v.id, v.user_id, v.created_ms, v.choice, p.text, il.uid, il.path, il.generator, il.sha256, "
            "ir.uid, ir.path, ir.generator, ir.sha256, u.flagged "
            "FROM votes v JOIN shows s ON s.id = v.show_id JOIN images il ON il.id = s.left_image "
            "JOIN images ir ON ir.id = s.right_image JOIN prompts p ON p.id = il.prompt_id JOIN users u ON u.id = v.user_id "
            "WHERE v.is_repeat = 0 AND v.choice IN ('left', 'right', 'tie') ORDER BY v.id");
        while (st.step()) {
            if (opt.exclude_flagged && st.int64(13) != 0) {
                ++rep.flagged_votes_left_out;
                continue;
            }
            Row r;
            r.vote_id = st.int64(0);
            r.user_id = st.int64(1);
            r.created_ms = st.int64(2);
            r.choice = st.text(3);
            r.prompt = st.text(4);
            for (int k = 0; k < 2; ++k) {
                r.uid[k] = st.text(5 + 4 * k);
                r.path[k] = st.text(6 + 4 * k);
                r.generator[k] = st.text(7 + 4 * k);
                r.sha[k] = st.text(8 + 4 * k);
            }
            rows.push_back(std::move(r));
        }
    }

    fs::create_directories(opt.out, ec);
    require<IoError>(fs::is_directory(opt.out, ec), "collect export: cannot create '", opt.out.string(), "'");
    if (opt.copy_images) fs::create_directories(opt.out / "images", ec);
    std::map<std::string, std::int64_t> per_prompt;
    std::set<std::int64_t> users;
    for (const Row& r : rows) {
        ++per_prompt[r.prompt];
        users.insert(r.user_id);
    }
    // The image files: copied once each (an existing copy of the same size is kept).
    std::map<std::string, std::string> file_of;  // uid -> path written into the manifest
    for (const Row& r : rows)
        for (int k = 0; k < 2; ++k) {
            if (file_of.count(r.uid[k])) continue;
            require<FormatError>(is_safe_relative_path(r.path[k]), "collect export: image path '", r.path[k], "' in the database is not a safe relative path");
            const fs::path src = pool / r.path[k];
            require<IoError>(fs::is_regular_file(src, ec), "collect export: image '", src.string(), "' (", r.uid[k], ") is missing");
            if (!opt.copy_images) {
                file_of[r.uid[k]] = fs::absolute(src).string();
                continue;
            }
            const fs::path rel = fs::path("images") / (r.uid[k] + src.extension().string());
            const fs::path dst = opt.out / rel;
            if (!(fs::exists(dst, ec) && fs::file_size(dst, ec) == fs::file_size(src, ec))) {
                const fs::path tmp = dst.string() + ".tmp";
                fs::copy_file(src, tmp, fs::copy_options::overwrite_existing, ec);
                require<IoError>(!ec, "collect export: cannot copy '", src.string(), "': ", ec.message());
                fs::rename(tmp, dst, ec);
                require<IoError>(!ec, "collect export: cannot write '", dst.string(), "': ", ec.message());
            }
            file_of[r.uid[k]] = rel.generic_string();
        }

    rep.file = opt.out / opt.file_name;
    const fs::path tmp = rep.file.string() + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        require<IoError>(bool(f), "collect export: cannot write '", tmp.string(), "'");
        for (const Row& r : rows) {
            const double l0 = r.choice == "left" ? 1.0 : r.choice == "right" ? 0.0 : 0.5;
            const double l1 = 1.0 - l0;
            io::Json j = io::Json::Object{};
            j.set("prompt", r.prompt);
            j.set("caption", r.prompt);
            j.set("image_0", file_of[r.uid[0]]);
            j.set("image_1", file_of[r.uid[1]]);
            j.set("image_0_uid", r.uid[0]);
            j.set("image_1_uid", r.uid[1]);
            io::Json labels = io::Json::Array{};
            labels.push_back(l0);
            labels.push_back(l1);
            j.set("labels", std::move(labels));
            j.set("label_0", l0);
            j.set("label_1", l1);
            j.set("num_example_per_prompt", per_prompt[r.prompt]);
            j.set("best_image_uid", r.choice == "left" ? r.uid[0] : r.choice == "right" ? r.uid[1] : std::string());
            j.set("model_0", r.generator[0]);
            j.set("model_1", r.generator[1]);
            j.set("user_id", r.user_id);
            j.set("ranking_id", r.vote_id);
            j.set("created_at", format_time_ms(r.created_ms));
            j.set("has_label", true);
            j.set("are_different", r.sha[0] != r.sha[1]);
            j.set("split", "train");
            f << io::json::dump(j) << '\n';
        }
        f.flush();
        require<IoError>(bool(f), "collect export: writing '", tmp.string(), "' failed");
    }
    fs::rename(tmp, rep.file, ec);
    require<IoError>(!ec, "collect export: cannot rename '", tmp.string(), "' to '", rep.file.string(), "': ", ec.message());
    rep.rows = std::int64_t(rows.size());
    rep.prompts = std::int64_t(per_prompt.size());
    rep.users = std::int64_t(users.size());
    rep.images = std::int64_t(file_of.size());
    return rep;
}

}  // namespace pickscore::collect
