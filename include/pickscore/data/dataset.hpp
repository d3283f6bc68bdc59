// pickscore/data/dataset.hpp — a preference data set over shards, JSONL manifests and in-memory
// examples, with split and label filters.
// pickscore-requires: pickscore::io
//
//   data::Dataset all = data::Dataset::open({"pickapic/"});          // *.pshard files, *.jsonl manifests
//   data::Dataset val = all.filter({.split = data::Split::validation_unique, .keep_only_with_label = true});
//   data::Record r = val.get(0);                                      // caption, two encoded images, labels
//
// Sources:
//   - shard files (data/shard.hpp), or folders: every *.pshard and *.jsonl inside, in name order;
//   - JSONL manifests, one example per line, for small private sets (what a collection app
//     exports). Fields: "prompt" (or "caption"); the images as "image_0" and "image_1" or
//     "images": [a, b] (paths, relative to the manifest's folder); the labels as "label_0" and
//     "label_1", or "labels": [l0, l1], or "label": 0 | 1 | "tie" (the preferred image, or a tie);
//     optional "num_example_per_prompt" (default: the number of lines with the same prompt in the
//     manifest), "split" (default "train"), "ranking_id", "user_id", "has_label",
//     "are_different". A line that is not valid is a FormatError naming the file and line;
//   - examples held in memory (the synthetic set, tests).
// A Dataset is a list of (source, record) pairs; filter() and select() make new lists over the same
// sources (shared, immutable), so copies are cheap and safe to read from many threads.
//
// Filters mirror PickScore's data set options: keep_only_different (are_different), and
// keep_only_with_label (has_label), which PickScore applies to the non-train splits by default
// (keep_only_with_label_in_non_train).
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "../core/error.hpp"
#include "../io/image_decode.hpp"
#include "../io/json.hpp"
#include "shard.hpp"

namespace pickscore::data {

// One example, ready to decode: images as encoded bytes (owned, or views into a mapped shard).
struct Record {
    std::string caption;
    std::array<std::span<const std::uint8_t>, 2> image;
    std::array<std::vector<std::uint8_t>, 2> owned;  // holds the bytes when read from files
    std::array<std::string, 2> image_name;           // for error messages
    std::array<float, 2> label{0.5f, 0.5f};
    float num_example_per_prompt = 1;
    Split split = Split::other;
    bool has_label = true, are_different = true;
    std::int64_t ranking_id = -1;
};

// What a record says without touching its images.
struct RecordInfo {
    std::array<float, 2> label{0.5f, 0.5f};
    float num_example_per_prompt = 1;
    Split split = Split::other;
    bool has_label = true, are_different = true;
};

struct DatasetFilter {
    std::optional<Split> split;        // keep only this split
    bool keep_only_with_label = false;  // drop has_label = false
    bool keep_only_different = false;   // drop are_different = false
};

// A manifest line, parsed.
struct ManifestRow {
    std::string caption;
    std::array<std::filesystem::path, 2> image;
    std::array<float, 2> label{0.5f, 0.5f};
    float num_example_per_prompt = 0;  // 0: not given (filled from the prompt counts)
    Split split = Split::train;
    bool has_label = true, are_different = true;
    std::int64_t ranking_id = -1, user_id = -1;
};

namespace detail {

inline std::array<float, 2> manifest_labels(const io::Json& j, const std::string& where) {
    if (const io::Json* l0 = j.find("label_0")) {
        const io::Json* l1 = j.find("label_1");
        require<FormatError>(l1 != nullptr, where, ": label_0 without label_1");
        return {float(l0->as_double()), float(l1->as_double())};
    }
    if (const io::Json* ls = j.find("labels")) {
        require<FormatError>(ls->is_array() && ls->size() == 2, where, ": \"labels\" must be a list of two numbers");
        return {float((*ls)[0].as_double()), float((*ls)[1].as_double())};
    }
    if (const io::Json* l = j.find("label")) {
        if (l->is_string()) {
            require<FormatError>(l->as_string() == "tie", where, ": \"label\" must be 0, 1 or \"tie\", got \"",
                                 l->as_string(), "\"");
            return {0.5f, 0.5f};
        }
        const std::int64_t v = l->as_int64();
        require<FormatError>(v == 0 || v == 1, where, ": \"label\" must be 0, 1 or \"tie\", got ", v);
        return v == 0 ? std::array<float, 2>{1.0f, 0.0f} : std::array<float, 2>{0.0f, 1.0f};
    }
    fail<FormatError>(where, ": no label (label_0/label_1, labels or label)");
}

inline void check_labels(const std::array<float, 2>& l, const std::string& where) {
    require<FormatError>(l[0] >= 0 && l[1] >= 0 && std::abs(double(l[0]) + double(l[1]) - 1.0) <= 1e-5, where,
                         ": labels [", l[0], ", ", l[1], "] are not a probability pair");
}

}  // namespace detail

// Parses a JSONL manifest (see the top of this file). Image paths are resolved against its folder.
inline std::vector<ManifestRow> read_manifest(const std::filesystem::path& path) {
    std::ifstream f(path, std::ios::binary);
    require<IoError>(bool(f), "manifest '", path.string(), "': cannot open");
    const std::filesystem::path base = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    std::vector<ManifestRow> rows;
    std::string line;
    std::size_t line_no = 0;
    while (std::getline(f, line)) {
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        const std::string where = "manifest '" + path.string() + "' line " + std::to_string(line_no);
        io::Json j;
        try {
            j = io::json::parse(line);
            require<FormatError>(j.is_object(), "expected a JSON object");
            ManifestRow r;
            const io::Json* p = j.find("prompt");
            if (!p) p = j.find("caption");
            require<FormatError>(p != nullptr, "no \"prompt\"");
            r.caption = p->as_string();
            if (const io::Json* imgs = j.find("images")) {
                require<FormatError>(imgs->is_array() && imgs->size() == 2, "\"images\" must be a list of two paths");
                r.image = {(*imgs)[0].as_string(), (*imgs)[1].as_string()};
            } else {
                r.image = {j["image_0"].as_string(), j["image_1"].as_string()};
            }
            for (auto& im : r.image)
                if (im.is_relative()) im = base / im;
            r.label = detail::manifest_labels(j, where);
            detail::check_labels(r.label, where);
            if (const io::Json* n = j.find("num_example_per_prompt")) {
                r.num_example_per_prompt = float(n->as_double());
                require<FormatError>(r.num_example_per_prompt > 0, "num_example_per_prompt must be positive");
            }
            if (const io::Json* s = j.find("split")) r.split = parse_split(s->as_string());
            if (const io::Json* v = j.find("ranking_id")) r.ranking_id = v->as_int64();
            if (const io::Json* v = j.find("user_id")) r.user_id = v->as_int64();
            if (const io::Json* v = j.find("has_label")) r.has_label = v->as_bool();
            if (const io::Json* v = j.find("are_different")) r.are_different = v->as_bool();
            rows.push_back(std::move(r));
        } catch (const FormatError& e) {
            const std::string msg = e.what();
            if (msg.rfind(where, 0) == 0) throw;
            fail<FormatError>(where, ": ", msg);
        } catch (const Error& e) {
            fail<FormatError>(where, ": ", e.what());
        }
    }
    // num_example_per_prompt defaults to the number of lines sharing the prompt.
    std::map<std::string, int> per_prompt;
    for (const ManifestRow& r : rows) ++per_prompt[r.caption];
    for (ManifestRow& r : rows)
        if (r.num_example_per_prompt == 0) r.num_example_per_prompt = float(per_prompt[r.caption]);
    return rows;
}

// Converts a manifest (images read from disk, bytes kept as they are) to one shard.
inline void manifest_to_shard(const std::filesystem::path& manifest, const std::filesystem::path& shard) {
    ShardWriter w(shard);
    for (const ManifestRow& r : read_manifest(manifest)) {
        Example e;
        e.caption = r.caption;
        e.image0 = io::read_file_bytes(r.image[0]);
        e.image1 = io::read_file_bytes(r.image[1]);
        e.label0 = r.label[0];
        e.label1 = r.label[1];
        e.num_example_per_prompt = std::uint32_t(std::max(1.0f, r.num_example_per_prompt));
        e.split = r.split;
        e.has_label = r.has_label;
        e.are_different = r.are_different;
        e.ranking_id = r.ranking_id;
        e.user_id = r.user_id;
        w.add(e);
    }
    w.finish();
}

class Dataset {
public:
    Dataset() : sources_(std::make_shared<Sources>()) {}

    // Shard files, JSONL manifests, or folders of them (*.pshard and *.jsonl, in name order).
    static Dataset open(const std::vector<std::filesystem::path>& paths) {
        namespace fs = std::filesystem;
        Dataset d;
        auto add_file = [&](const fs::path& p) {
            const std::string ext = p.extension().string();
            if (ext == ".jsonl") {
                d.add_manifest(p);
            } else {
                d.add_shard(p);
            }
        };
        for (const fs::path& p : paths) {
            std::error_code ec;
            if (fs::is_directory(p, ec)) {
                std::vector<fs::path> files;
                for (const auto& e : fs::directory_iterator(p))
                    if (e.is_regular_file() && (e.path().extension() == shard_format::extension ||
                                                e.path().extension() == ".jsonl"))
                        files.push_back(e.path());
                std::sort(files.begin(), files.end());
                require<IoError>(!files.empty(), "dataset: folder '", p.string(), "' holds no *",
                                 shard_format::extension, " or *.jsonl file");
                for (const fs::path& f : files) add_file(f);
            } else {
                require<IoError>(fs::exists(p, ec), "dataset: '", p.string(), "' does not exist");
                add_file(p);
            }
        }
        return d;
    }
    static Dataset open(const std::filesystem::path& path) { return open(std::vector<std::filesystem::path>{path}); }

    // A data set of examples held in memory.
    static Dataset from_examples(std::vector<Example> examples) {
        Dataset d;
        auto& mem = d.sources_->memory;
        const std::size_t src = mem.size();
        mem.push_back(std::make_shared<const std::vector<Example>>(std::move(examples)));
        for (std::size_t i = 0; i < mem.back()->size(); ++i) d.items_.push_back({Kind::memory, src, i});
        return d;
    }

    std::int64_t size() const { return std::int64_t(items_.size()); }
    bool empty() const { return items_.empty(); }

    RecordInfo info(std::int64_t i) const {
        const Item& it = item(i);
        RecordInfo r;
        switch (it.kind) {
            case Kind::shard: {
                const ShardEntry& e = sources_->shards[it.source]->entry(it.index);
                r.label = {e.label0, e.label1};
                r.num_example_per_prompt = float(e.num_example_per_prompt);
                r.split = e.split;
                r.has_label = e.has_label;
                r.are_different = e.are_different;
                break;
            }
            case Kind::manifest: {
                const ManifestRow& m = (*sources_->manifests[it.source])[it.index];
                r.label = m.label;
                r.num_example_per_prompt = m.num_example_per_prompt;
                r.split = m.split;
                r.has_label = m.has_label;
                r.are_different = m.are_different;
                break;
            }
            case Kind::memory: {
                const Example& e = (*sources_->memory[it.source])[it.index];
                r.label = {e.label0, e.label1};
                r.num_example_per_prompt = float(e.num_example_per_prompt);
                r.split = e.split;
                r.has_label = e.has_label;
                r.are_different = e.are_different;
                break;
            }
        }
        return r;
    }

    // The whole record. A damaged shard record is CorruptRecord; an unreadable manifest image is
    // IoError (both name the record). verify: check the shard record's CRC.
    Record get(std::int64_t i, bool verify = true) const {
        const Item& it = item(i);
        Record r;
        const RecordInfo inf = info(i);
        r.label = inf.label;
        r.num_example_per_prompt = inf.num_example_per_prompt;
        r.split = inf.split;
        r.has_label = inf.has_label;
        r.are_different = inf.are_different;
        switch (it.kind) {
            case Kind::shard: {
                const ShardFile& s = *sources_->shards[it.source];
                const ShardRecord sr = s.record(it.index, verify);
                r.caption = std::string(sr.caption);
                r.image = {sr.image0, sr.image1};
                r.ranking_id = sr.entry->ranking_id;
                for (int k = 0; k < 2; ++k)
                    r.image_name[std::size_t(k)] =
                        s.path() + " record " + std::to_string(it.index) + " image " + std::to_string(k);
                break;
            }
            case Kind::manifest: {
                const ManifestRow& m = (*sources_->manifests[it.source])[it.index];
                r.caption = m.caption;
                r.ranking_id = m.ranking_id;
                for (std::size_t k = 0; k < 2; ++k) {
                    r.image_name[k] = m.image[k].string();
                    r.owned[k] = io::read_file_bytes(m.image[k]);
                    r.image[k] = r.owned[k];
                }
                break;
            }
            case Kind::memory: {
                const Example& e = (*sources_->memory[it.source])[it.index];
                r.caption = e.caption;
                r.image = {std::span<const std::uint8_t>(e.image0), std::span<const std::uint8_t>(e.image1)};
                r.ranking_id = e.ranking_id;
                for (int k = 0; k < 2; ++k)
                    r.image_name[std::size_t(k)] = "example " + std::to_string(it.index) + " image " + std::to_string(k);
                break;
            }
        }
        return r;
    }

    // The records that pass the filter, in order.
    Dataset filter(const DatasetFilter& f) const {
        Dataset d;
        d.sources_ = sources_;
        for (std::int64_t i = 0; i < size(); ++i) {
            const RecordInfo r = info(i);
            if (f.split && r.split != *f.split) continue;
            if (f.keep_only_with_label && !r.has_label) continue;
            if (f.keep_only_different && !r.are_different) continue;
            d.items_.push_back(items_[std::size_t(i)]);
        }
        return d;
    }
    // Records [begin, end).
    Dataset slice(std::int64_t begin, std::int64_t end) const {
        require<Error>(0 <= begin && begin <= end && end <= size(), "Dataset::slice: [", begin, ", ", end,
                       ") out of range for ", size(), " records");
        Dataset d;
        d.sources_ = sources_;
        d.items_.assign(items_.begin() + begin, items_.begin() + end);
        return d;
    }
    // This data set followed by another's records.
    Dataset concat(const Dataset& o) const {
        Dataset d;
        d.sources_ = std::make_shared<Sources>(*sources_);
        const std::size_t ns = d.sources_->shards.size(), nm = d.sources_->manifests.size(),
                          nx = d.sources_->memory.size();
        d.items_ = items_;
        for (const auto& s : o.sources_->shards) d.sources_->shards.push_back(s);
        for (const auto& s : o.sources_->manifests) d.sources_->manifests.push_back(s);
        for (const auto& s : o.sources_->memory) d.sources_->memory.push_back(s);
        for (Item it : o.items_) {
            it.source += it.kind == Kind::shard ? ns : it.kind == Kind::manifest ? nm : nx;
            d.items_.push_back(it);
        }
        return d;
    }

    // How many records each split has.
    std::map<Split, std::int64_t> split_counts() const {
        std::map<Split, std::int64_t> m;
        for (std::int64_t i = 0; i < size(); ++i) ++m[info(i).split];
        return m;
    }

private:
    enum class Kind : std::uint8_t { shard, manifest, memory };
    struct Item {
        Kind kind;
        std::size_t source;
        std::size_t index;
    };
    struct Sources {
        std::vector<std::shared_ptr<const ShardFile>> shards;
        std::vector<std::shared_ptr<const std::vector<ManifestRow>>> manifests;
        std::vector<std::shared_ptr<const std::vector<Example>>> memory;
    };

    const Item& item(std::int64_t i) const {
        require<Error>(0 <= i && i < size(), "Dataset: record ", i, " out of range (", size(), " records)");
        return items_[std::size_t(i)];
    }
    void add_shard(const std::filesystem::path& p) {
        auto s = std::make_shared<const ShardFile>(ShardFile::open(p));
        const std::size_t src = sources_->shards.size();
        sources_->shards.push_back(s);
        for (std::size_t i = 0; i < s->size(); ++i) items_.push_back({Kind::shard, src, i});
    }
    void add_manifest(const std::filesystem::path& p) {
        auto rows = std::make_shared<const std::vector<ManifestRow>>(read_manifest(p));
        const std::size_t src = sources_->manifests.size();
        sources_->manifests.push_back(rows);
        for (std::size_t i = 0; i < rows->size(); ++i) items_.push_back({Kind::manifest, src, i});
    }

    std::shared_ptr<Sources> sources_;
    std::vector<Item> items_;
};

}  // namespace pickscore::data
