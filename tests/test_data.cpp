// The preference data layer (include/pickscore/data/): the shard format (round trip, the byte
// layout read back by hand, every kind of damage), JSONL manifests, the synthetic set, and the
// loader (seeded order, epochs, drop_last, rank shares, resume at a position, corrupt records
// skipped and counted up to a limit, batches equal to the records prepared one by one).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "support/files.hpp"
#include <pickscore/data/dataset.hpp>
#include <pickscore/data/loader.hpp>
#include <pickscore/data/png.hpp>
#include <pickscore/data/shard.hpp>
#include <pickscore/data/synthetic.hpp>
#include <pickscore/io/image_decode.hpp>
#include <pickscore/io/tokenizer.hpp>

using namespace pickscore;
namespace fs = std::filesystem;

namespace {

template <class E = FormatError>
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
    test::expect_error_of<E>(f, parts);
}

using test::TempDir;

std::vector<std::uint8_t> read_all(const fs::path& p) { return io::read_file_bytes(p); }
void write_all(const fs::path& p, const std::vector<std::uint8_t>& b) {
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

std::shared_ptr<const io::Tokenizer> tokenizer() {
    static auto tok = std::make_shared<const io::Tokenizer>(
        io::Tokenizer::from_file(fs::path(PICKSCORE_SHARED_DIR) / "data" / "bpe_simple_vocab_16e6.txt.gz"));
    return tok;
}

data::SyntheticOptions small(std::uint64_t seed = 3) {
    data::SyntheticOptions o;
    o.image_size = 16;
    o.seed = seed;
    o.tie_fraction = 0.2;
    return o;
}

data::LoaderOptions loader_options(std::int64_t batch) {
    data::LoaderOptions lo;
    lo.batch = batch;
    lo.preprocess.size = 16;
    lo.context_length = 16;
    lo.workers = 2;
    lo.seed = 11;
    return lo;
}

std::uint32_t le32(const std::vector<std::uint8_t>& b, std::size_t at) {
    return std::uint32_t(b[at]) | std::uint32_t(b[at + 1]) << 8 | std::uint32_t(b[at + 2]) << 16 |
           std::uint32_t(b[at + 3]) << 24;
}
std::uint64_t le64(const std::vector<std::uint8_t>& b, std::size_t at) {
    return std::uint64_t(le32(b, at)) | std::uint64_t(le32(b, at + 4)) << 32;
}

}  // namespace

TEST_CASE("encode_png: decodes back to the same pixels") {
    Rng rng(5);
    for (auto [w, h] : {std::pair{1, 1}, {7, 3}, {33, 20}}) {
        io::RgbImage img;
        img.width = w;
        img.height = h;
        img.pixels.resize(std::size_t(w * h * 3));
        for (auto& p : img.pixels) p = std::uint8_t(rng.below(256));
        for (int level : {0, 6}) {
            const auto png = data::encode_png(img, level);
            const io::RgbImage back = io::decode_image(png, "png");
            CHECK(back.width == w);
            CHECK(back.height == h);
            CHECK(back.pixels == img.pixels);
        }
    }
    io::RgbImage bad;
    bad.width = 2;
    bad.height = 2;
    bad.pixels.resize(5);
    expect_error<Error>([&] { (void)data::encode_png(bad); }, {"encode_png", "needs 12 bytes"});
}

TEST_CASE("shard: round trip of every field, and the byte layout") {
    TempDir dir("roundtrip");
    auto ex = data::make_synthetic_preferences(7, data::Split::validation_unique, small());
    ex[2].meta = R"({"image_0_uid": "a", "model_0": "sd"})";
    ex[3].caption = "";  // empty pieces are fine
    ex[4].has_label = false;
    ex[4].are_different = false;
    ex[5].split = data::Split::test_unique;
    ex[5].ranking_id = 1234567890123;
    ex[5].user_id = -7;
    const fs::path p = dir.path / "a.pshard";
    data::write_shard(p, ex);
    CHECK_FALSE(fs::exists(dir.path / (".a.pshard.tmp-" + std::to_string(::getpid()))));

    const data::ShardFile s = data::ShardFile::open(p);
    REQUIRE(s.size() == ex.size());
    for (std::size_t i = 0; i < ex.size(); ++i) {
        const data::ShardRecord r = s.record(i);
        CHECK(r.caption == ex[i].caption);
        CHECK(std::vector<std::uint8_t>(r.image0.begin(), r.image0.end()) == ex[i].image0);
        CHECK(std::vector<std::uint8_t>(r.image1.begin(), r.image1.end()) == ex[i].image1);
        CHECK(r.meta == ex[i].meta);
        const data::ShardEntry& e = s.entry(i);
        CHECK(e.label0 == ex[i].label0);
        CHECK(e.label1 == ex[i].label1);
        CHECK(e.num_example_per_prompt == ex[i].num_example_per_prompt);
        CHECK(e.split == ex[i].split);
        CHECK(e.has_label == ex[i].has_label);
        CHECK(e.are_different == ex[i].are_different);
        CHECK(e.ranking_id == ex[i].ranking_id);
        CHECK(e.user_id == ex[i].user_id);
    }
    // The layout of the documented format, read by hand (what tools/convert_pickapic.py writes).
    const auto b = read_all(p);
    CHECK(std::memcmp(b.data(), "PICKSHRD", 8) == 0);
    CHECK(le32(b, 8) == 1);
    CHECK(le32(b, 12) == 64);
    CHECK(le64(b, 16) == ex.size());
    CHECK(le64(b, 32) == b.size());
    CHECK(le64(b, 24) == b.size() - 64 * ex.size());
    CHECK(le32(b, 40) == 64);
    CHECK(le32(b, 60) == data::shard_format::crc32(b.data(), 60));
    const std::size_t idx = std::size_t(le64(b, 24));
    CHECK(le32(b, 44) == data::shard_format::crc32(b.data() + idx, 64 * ex.size()));
    const std::size_t e1 = idx + 64;  // record 1's entry
    CHECK(le64(b, e1) == 64 + ex[0].caption.size() + ex[0].image0.size() + ex[0].image1.size() + ex[0].meta.size());
    CHECK(le32(b, e1 + 8) == ex[1].caption.size());
    CHECK(b[e1 + 36] == std::uint8_t(data::Split::validation_unique));
    CHECK(std::string(reinterpret_cast<const char*>(b.data() + le64(b, e1)), ex[1].caption.size()) == ex[1].caption);
}

TEST_CASE("shard: damage is reported, and a damaged record is only that record's problem") {
    TempDir dir("damage");
    const auto ex = data::make_synthetic_preferences(4, data::Split::train, small());
    const fs::path p = dir.path / "d.pshard";
    data::write_shard(p, ex);
    const auto good = read_all(p);
    const std::size_t idx = std::size_t(le64(good, 24));
    auto with = [&](const std::function<void(std::vector<std::uint8_t>&)>& f) {
        auto b = good;
        f(b);
        return b;
    };
    SUBCASE("a flipped byte in a record: CorruptRecord for it, the others read") {
        const std::size_t at = std::size_t(le64(good, idx + 2 * 64)) + 5;  // inside record 2
        const data::ShardFile s = data::ShardFile::from_bytes(with([&](auto& b) { b[at] ^= 0x40; }), "x.pshard");
        expect_error<data::CorruptRecord>([&] { (void)s.record(2); }, {"x.pshard", "record 2", "CRC"});
        CHECK_NOTHROW((void)s.record(2, /*verify=*/false));
        for (std::size_t i : {0u, 1u, 3u}) CHECK_NOTHROW((void)s.record(i));
    }
    SUBCASE("header damage") {
        expect_error([&] { (void)data::ShardFile::from_bytes(with([](auto& b) { b[0] = 'X'; }), "h"); }, {"h", "magic"});
        expect_error([&] { (void)data::ShardFile::from_bytes(with([](auto& b) { b[8] = 2; }), "h"); },
                     {"version 2"});
        expect_error([&] { (void)data::ShardFile::from_bytes(with([](auto& b) { b[17] ^= 1; }), "h"); },
                     {"header CRC"});
        expect_error([&] { (void)data::ShardFile::from_bytes({good.begin(), good.begin() + 30}, "h"); },
                     {"shorter than the 64-byte header"});
    }
    SUBCASE("truncated, appended to, index damaged") {
        expect_error([&] { (void)data::ShardFile::from_bytes({good.begin(), good.end() - 1}, "t"); }, {"t", "truncated"});
        expect_error([&] { (void)data::ShardFile::from_bytes(with([](auto& b) { b.push_back(0); }), "t"); },
                     {"truncated or appended"});
        expect_error([&] { (void)data::ShardFile::from_bytes(with([&](auto& b) { b[idx + 9] ^= 1; }), "i"); },
                     {"i", "index CRC"});
    }
    SUBCASE("an index entry out of range, with a valid index CRC") {
        auto b = good;
        const std::uint64_t huge = le64(good, 24);  // record 1 starting at the index: past the data
        std::memcpy(b.data() + idx + 64, &huge, 8);
        const std::uint32_t icrc = data::shard_format::crc32(b.data() + idx, 64 * ex.size());
        std::memcpy(b.data() + 44, &icrc, 4);
        const std::uint32_t hcrc = data::shard_format::crc32(b.data(), 60);
        std::memcpy(b.data() + 60, &hcrc, 4);
        expect_error([&] { (void)data::ShardFile::from_bytes(b, "r"); }, {"r", "record 1", "outside the data region"});
    }
    SUBCASE("not there") {
        expect_error<IoError>([&] { (void)data::ShardFile::open(dir.path / "missing.pshard"); }, {"missing.pshard"});
    }
}

TEST_CASE("manifest: label forms, defaults, paths relative to the manifest, errors by line; to a shard") {
    TempDir dir("manifest");
    fs::create_directories(dir.path / "img");
    const auto ex = data::make_synthetic_preferences(3, data::Split::train, small());
    for (int i = 0; i < 3; ++i) {
        write_all(dir.path / "img" / ("a" + std::to_string(i) + ".png"), ex[std::size_t(i)].image0);
        write_all(dir.path / "img" / ("b" + std::to_string(i) + ".png"), ex[std::size_t(i)].image1);
    }
    const fs::path m = dir.path / "set.jsonl";
    {
        std::ofstream f(m);
        f << R"({"prompt": "a cat", "image_0": "img/a0.png", "image_1": "img/b0.png", "label_0": 1, "label_1": 0})" << "\n";
        f << "\n";  // blank lines are skipped
        f << R"({"prompt": "a cat", "images": ["img/a1.png", "img/b1.png"], "label": "tie", "split": "validation_unique"})" << "\n";
        f << R"({"caption": "a dog", "images": ["img/a2.png", "img/b2.png"], "labels": [0, 1], "num_example_per_prompt": 5, "ranking_id": 9})" << "\n";
    }
    const data::Dataset d = data::Dataset::open(m);
    REQUIRE(d.size() == 3);
    const data::Record r0 = d.get(0), r1 = d.get(1), r2 = d.get(2);
    CHECK(r0.caption == "a cat");
    CHECK(r0.label == std::array<float, 2>{1, 0});
    CHECK(r0.num_example_per_prompt == 2);  // two lines share the prompt
    CHECK(r0.split == data::Split::train);
    CHECK(std::vector<std::uint8_t>(r0.image[1].begin(), r0.image[1].end()) == ex[0].image1);
    CHECK(r1.label == std::array<float, 2>{0.5f, 0.5f});
    CHECK(r1.split == data::Split::validation_unique);
    CHECK(r2.caption == "a dog");
    CHECK(r2.label == std::array<float, 2>{0, 1});
    CHECK(r2.num_example_per_prompt == 5);
    CHECK(r2.ranking_id == 9);
    CHECK(d.filter({.split = data::Split::validation_unique}).size() == 1);

    data::manifest_to_shard(m, dir.path / "set.pshard");
    const data::Dataset s = data::Dataset::open(dir.path / "set.pshard");
    REQUIRE(s.size() == 3);
    for (std::int64_t i = 0; i < 3; ++i) {
        const data::Record a = d.get(i), b = s.get(i);
        CHECK(a.caption == b.caption);
        CHECK(a.label == b.label);
        CHECK(a.num_example_per_prompt == b.num_example_per_prompt);
        CHECK(a.split == b.split);
        CHECK(std::equal(a.image[0].begin(), a.image[0].end(), b.image[0].begin(), b.image[0].end()));
    }
    // A folder with both a shard and a manifest reads both, in name order.
    CHECK(data::Dataset::open(dir.path).size() == 6);

    auto bad = [&](const std::string& line, const std::vector<std::string>& parts) {
        const fs::path p = dir.path / "bad.jsonl";
        std::ofstream(p) << R"({"prompt": "x", "images": ["img/a0.png", "img/b0.png"], "label": 0})" << "\n" << line << "\n";
        std::vector<std::string> all = {"bad.jsonl", "line 2"};
        all.insert(all.end(), parts.begin(), parts.end());
        expect_error([&] { (void)data::read_manifest(p); }, all);
    };
    bad(R"({"images": ["a", "b"], "label": 0})", {"prompt"});
    bad(R"({"prompt": "x", "images": ["a"], "label": 0})", {"two paths"});
    bad(R"({"prompt": "x", "images": ["a", "b"], "label": 2})", {"label"});
    bad(R"({"prompt": "x", "images": ["a", "b"], "labels": [0.7, 0.7]})", {"probability pair"});
    bad(R"({"prompt": "x", "images": ["a", "b"]})", {"no label"});
    bad(R"({"prompt": "x", "images": ["a", "b"], "label": 0, "split": "nope"})", {"unknown split"});
    bad("not json", {"json"});
    // A missing image file is an error of that record when it is read (the loader skips it).
    std::ofstream(dir.path / "missing.jsonl") << R"({"prompt": "x", "images": ["img/none.png", "img/b0.png"], "label": 0})" << "\n";
    const data::Dataset dm = data::Dataset::open(dir.path / "missing.jsonl");
    expect_error<IoError>([&] { (void)dm.get(0); }, {"none.png"});
}

TEST_CASE("synthetic set: deterministic, the matching image preferred, ties, counts per prompt") {
    const auto a = data::make_synthetic_examples(200, data::Split::train, small(4));
    const auto b = data::make_synthetic_examples(200, data::Split::train, small(4));
    const auto c = data::make_synthetic_examples(200, data::Split::train, small(5));
    int ties = 0, differ = 0;
    std::map<std::string, int> per_prompt;
    for (std::size_t i = 0; i < a.size(); ++i) {
        CHECK(a[i].example.image0 == b[i].example.image0);
        differ += a[i].example.caption != c[i].example.caption;
        const auto& e = a[i].example;
        ++per_prompt[e.caption];
        CHECK(e.caption == data::describe(a[i].prompt_scene));
        if (e.label0 == 0.5f) {
            ++ties;
            CHECK(a[i].scene0.same_content(a[i].prompt_scene));
            CHECK(a[i].scene1.same_content(a[i].prompt_scene));
        } else {
            const auto& preferred = e.label0 == 1.0f ? a[i].scene0 : a[i].scene1;
            const auto& other = e.label0 == 1.0f ? a[i].scene1 : a[i].scene0;
            CHECK(preferred.same_content(a[i].prompt_scene));
            CHECK_FALSE(other.same_content(a[i].prompt_scene));
            CHECK(other.color != other.background);
        }
        const io::RgbImage img = io::decode_image(e.image0);
        CHECK(img.width == 16);
    }
    for (const auto& se : a) CHECK(se.example.num_example_per_prompt == std::uint32_t(per_prompt[se.example.caption]));
    CHECK(ties > 20);  // tie_fraction 0.2 of 200: about 40
    CHECK(ties < 70);
    CHECK(differ > 150);  // another seed, another set
}

TEST_CASE("loader: seeded order, every record once per epoch, drop_last, resume at a position") {
    const data::Dataset d = data::Dataset::from_examples(data::make_synthetic_preferences(23, data::Split::train, small()));
    auto run = [&](data::LoaderOptions lo, int batches, data::Position start = {}) {
        data::DataLoader l(d, tokenizer(), lo, start);
        std::vector<std::vector<std::int64_t>> out;
        for (int i = 0; i < batches; ++i) out.push_back(l.next()->index);
        return std::pair{out, l.position()};
    };
    auto lo = loader_options(5);
    const auto [a, pa] = run(lo, 9);
    const auto [b, pb] = run(lo, 9);
    CHECK(a == b);  // the same seed, the same order (whatever the threads did)
    CHECK(pa == data::Position{2, 5, 0});  // 4 full batches of 5 per epoch (3 records dropped), 9 = 2 epochs + 1
    CHECK(a[0] != a[4]);                   // the second epoch is shuffled differently
    // Each epoch visits distinct records.
    for (int e = 0; e < 2; ++e) {
        std::set<std::int64_t> seen;
        for (int i = 0; i < 4; ++i) seen.insert(a[std::size_t(4 * e + i)].begin(), a[std::size_t(4 * e + i)].end());
        CHECK(seen.size() == 20);
    }
    auto lo2 = lo;
    lo2.seed = 12;
    CHECK(run(lo2, 4).first != std::vector<std::vector<std::int64_t>>(a.begin(), a.begin() + 4));
    // Resume: starting at the position after 3 batches gives batches 4.. exactly.
    data::Position p3;
    {
        data::DataLoader l(d, tokenizer(), lo);
        for (int i = 0; i < 3; ++i) (void)l.next();
        p3 = l.position();
        CHECK(p3 == data::Position{0, 15, 0});
    }
    const auto [c, pc] = run(lo, 6, p3);
    CHECK(c == std::vector<std::vector<std::int64_t>>(a.begin() + 3, a.end()));
    CHECK(pc == pa);
    // Without shuffle: in order. Without drop_last and loop: 5 batches, the last of 3, then the end.
    auto lo3 = lo;
    lo3.shuffle = false;
    lo3.drop_last = false;
    lo3.loop = false;
    data::DataLoader l(d, tokenizer(), lo3);
    std::vector<std::int64_t> all;
    int n = 0;
    while (auto bt = l.next()) {
        ++n;
        all.insert(all.end(), bt->index.begin(), bt->index.end());
    }
    CHECK(n == 5);
    CHECK(all.size() == 23);
    CHECK(std::is_sorted(all.begin(), all.end()));
    CHECK_FALSE(l.next().has_value());
}

TEST_CASE("loader: rank shares partition each global batch; batches equal the records prepared one by one") {
    const data::Dataset d = data::Dataset::from_examples(data::make_synthetic_preferences(12, data::Split::train, small()));
    auto lo = loader_options(6);
    data::DataLoader whole(d, tokenizer(), lo);
    std::vector<std::unique_ptr<data::DataLoader>> ranks;
    for (int r = 0; r < 3; ++r) {
        auto o = lo;
        o.rank = r;
        o.world = 3;
        ranks.push_back(std::make_unique<data::DataLoader>(d, tokenizer(), o));
    }
    for (int step = 0; step < 3; ++step) {
        const auto w = whole.next();
        std::vector<std::int64_t> joined;
        for (auto& r : ranks) {
            const auto b = r->next();
            CHECK(b->size() == 2);
            joined.insert(joined.end(), b->index.begin(), b->index.end());
        }
        CHECK(joined == w->index);
        // The batch's tensors are the records prepared one by one.
        for (std::int64_t i = 0; i < w->size(); ++i) {
            Tensor<float, Cpu> px(Shape{2, 3, 16, 16});
            std::vector<std::int32_t> ids(16);
            const data::Record rec = d.get(w->index[std::size_t(i)]);
            data::prepare_record(px, ids, rec, *tokenizer(), lo.preprocess, lo.decode);
            CHECK(std::equal(px.begin(), px.end(), w->pixels.select(i).begin()));
            CHECK(std::equal(ids.begin(), ids.end(), w->ids.select(i).begin()));
            CHECK(w->labels[2 * i] == rec.label[0]);
            CHECK(w->counts[i] == rec.num_example_per_prompt);
            CHECK(w->captions[std::size_t(i)] == rec.caption);
        }
    }
    auto bad = lo;
    bad.world = 4;
    expect_error<Error>([&] { data::DataLoader l(d, tokenizer(), bad); }, {"not divisible by world size 4"});
}

TEST_CASE("loader: corrupt records are skipped and counted, up to the limit") {
    TempDir dir("corrupt");
    auto ex = data::make_synthetic_preferences(10, data::Split::train, small());
    ex[3].image1 = {1, 2, 3, 4};                   // not an image
    ex[7].image0.resize(ex[7].image0.size() / 2);  // a truncated PNG
    const fs::path p = dir.path / "c.pshard";
    data::write_shard(p, ex);
    // And a CRC failure: damage record 5's caption in the file.
    auto bytes = read_all(p);
    const std::size_t idx = std::size_t(le64(bytes, 24));
    bytes[std::size_t(le64(bytes, idx + 5 * 64))] ^= 0x20;
    write_all(p, bytes);
    const data::Dataset d = data::Dataset::open(p);
    auto lo = loader_options(10);
    lo.shuffle = false;
    SUBCASE("within the limit") {
        lo.max_corrupt = 3;
        data::DataLoader l(d, tokenizer(), lo);
        const auto b = l.next();
        CHECK(b->size() == 7);
        REQUIRE(b->skipped.size() == 3);
        CHECK(b->skipped[0].find("record 3") != std::string::npos);
        CHECK(b->skipped[1].find("CRC") != std::string::npos);
        CHECK(b->skipped[2].find("record 7") != std::string::npos);
        CHECK(b->index == std::vector<std::int64_t>{0, 1, 2, 4, 6, 8, 9});
        CHECK(l.position().skipped == 3);
    }
    SUBCASE("past it") {
        lo.max_corrupt = 2;
        data::DataLoader l(d, tokenizer(), lo);
        expect_error<Error>([&] { (void)l.next(); }, {"3 corrupt records skipped", "limit of 2", "record 7"});
    }
    SUBCASE("the count carries over a resume") {
        lo.max_corrupt = 4;
        data::DataLoader l(d, tokenizer(), lo, data::Position{0, 0, 2});
        expect_error<Error>([&] { (void)l.next(); }, {"5 corrupt records"});
    }
}

TEST_CASE("dataset: filters by split and flags; slices; concatenation") {
    auto ex = data::make_synthetic_preferences(6, data::Split::train, small());
    for (auto& e : ex) e.are_different = true;
    ex[1].split = data::Split::validation_unique;
    ex[2].has_label = false;
    ex[3].are_different = false;
    const data::Dataset d = data::Dataset::from_examples(ex);
    CHECK(d.filter({.split = data::Split::train}).size() == 5);
    CHECK(d.filter({.split = std::nullopt, .keep_only_with_label = true}).size() == 5);
    CHECK(d.filter({.split = std::nullopt, .keep_only_with_label = false, .keep_only_different = true}).size() == 5);
    CHECK(d.filter({.split = data::Split::train, .keep_only_with_label = true, .keep_only_different = true}).size() == 3);
    CHECK(d.slice(2, 4).get(0).caption == ex[2].caption);
    const data::Dataset both = d.concat(d.slice(0, 2));
    CHECK(both.size() == 8);
    CHECK(both.get(7).caption == ex[1].caption);
    CHECK(d.split_counts().at(data::Split::validation_unique) == 1);
    expect_error<Error>([&] { (void)d.get(6); }, {"out of range"});
    CHECK(data::parse_split("test_unique") == data::Split::test_unique);
    expect_error<Error>([&] { (void)data::parse_split("dev"); }, {"unknown split 'dev'"});
}
