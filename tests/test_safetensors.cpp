// The safetensors reader and writer (io/safetensors.hpp): round trips of every element type,
// conversions on read, the byte layout checked by hand, sharded sets, every kind of corrupt file,
// and the atomic writer leaving no partial file behind.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#if defined(__linux__)
#include <csignal>
#include <sys/resource.h>
#endif
#include <unistd.h>

#include "support/files.hpp"
#include <pickscore/core/random.hpp>
#include <pickscore/io/json.hpp>
#include <pickscore/io/safetensors.hpp>

using namespace pickscore;
namespace fs = std::filesystem;

namespace {

template <class E = FormatError>
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
    test::expect_error_of<E>(f, parts);
}

using test::TempDir;

// A file from a header text (written as is, no padding) and a data section.
std::vector<std::byte> raw_file(const std::string& header, const std::vector<std::uint8_t>& data) {
    std::vector<std::byte> out(8);
    const std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out[std::size_t(i)] = std::byte((n >> (8 * i)) & 0xff);
    for (char c : header) out.push_back(std::byte(static_cast<unsigned char>(c)));
    for (std::uint8_t b : data) out.push_back(std::byte(b));
    return out;
}

io::SafetensorsFile parse(const std::vector<std::byte>& bytes) {
    return io::SafetensorsFile::from_memory(bytes, "corrupt.safetensors");
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

template <class T>
Tensor<T> random_tensor(Shape shape, std::uint64_t seed) {
    Tensor<T> t(shape);
    Rng rng(seed);
    for (std::int64_t i = 0; i < t.numel(); ++i) {
        if constexpr (std::is_same_v<T, std::int32_t>) {
            t[i] = std::int32_t(rng.below(100000)) - 50000;
        } else {
            t[i] = cast<T>(rng.normal() * 3.0);
        }
    }
    return t;
}

template <class A, class B>
bool same_values(const TensorView<A>& a, const TensorView<B>& b) {
    if (a.numel() != b.numel()) return false;
    for (std::int64_t i = 0; i < a.numel(); ++i)
        if (!(cast<double>(a[i]) == cast<double>(b[i]))) return false;
    return true;
}

}  // namespace

TEST_CASE("safetensors: round trip of every element type, layout checked by hand") {
    // Odd element counts so that a naive layout would misalign the wider types that follow.
    auto a = random_tensor<bf16>(Shape{3, 5}, 1);
    auto b = random_tensor<float>(Shape{2, 3, 7}, 2);
    auto c = random_tensor<f16>(Shape{7}, 3);
    auto d = random_tensor<double>(Shape{1, 1, 1, 1, 2, 3}, 4);
    auto e = random_tensor<std::int32_t>(Shape{9}, 5);
    Tensor<float> scalar(Shape{});
    scalar[0] = 4.6052f;
    Tensor<float> empty(Shape{0, 3});
    const std::map<std::string, std::string> md{{"format", "pt"}, {"note", "caf\xC3\xA9 \"quoted\""}};
    const std::vector<io::TensorToWrite> list{
        io::tensor_to_write("a.bf16", a.view()), io::tensor_to_write("b.f32", b.view()),
        io::tensor_to_write("c.f16", c.view()),  io::tensor_to_write("d.f64", d.view()),
        io::tensor_to_write("e.i32", e.view()),  io::tensor_to_write("logit_scale", scalar.view()),
        io::tensor_to_write("z.empty", empty.view())};
    const std::vector<std::byte> bytes = io::safetensors_bytes(list, md);

    // The layout, read without the library's reader: length, JSON, offsets.
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<std::uint64_t>(bytes[std::size_t(i)]);
    CHECK((8 + n) % 8 == 0);  // data section 8-aligned
    const std::string header(reinterpret_cast<const char*>(bytes.data()) + 8, std::size_t(n));
    const io::Json j = io::json::parse(header);
    CHECK(j["__metadata__"]["format"].as_string() == "pt");
    CHECK(j["__metadata__"]["note"].as_string() == "caf\xC3\xA9 \"quoted\"");
    CHECK(j["logit_scale"]["shape"].size() == 0);
    CHECK(j["b.f32"]["dtype"].as_string() == "F32");
    CHECK(j["a.bf16"]["dtype"].as_string() == "BF16");
    CHECK(j["d.f64"]["data_offsets"][0].as_int64() == 0);  // widest type first
    std::uint64_t total = 0;
    for (const auto& [name, v] : j.items()) {
        if (name == "__metadata__") continue;
        const std::int64_t begin = v["data_offsets"][0].as_int64();
        const std::int64_t size = v["dtype"].as_string() == "F64" ? 8 : v["dtype"].as_string() == "F32" ||
                                                                                v["dtype"].as_string() == "I32"
                                                                            ? 4
                                                                            : 2;
        CHECK_MESSAGE(begin % size == 0, name << " misaligned at " << begin);
        total += std::uint64_t(v["data_offsets"][1].as_int64() - begin);
    }
    CHECK(bytes.size() == 8 + n + total);
    // The f32 tensor's bytes are exactly b's.
    const std::int64_t b0 = j["b.f32"]["data_offsets"][0].as_int64();
    CHECK(std::memcmp(bytes.data() + 8 + n + std::uint64_t(b0), b.data(), b.bytes()) == 0);

    // Read back through the reader, from memory and from a file.
    TempDir dir("roundtrip");
    const fs::path path = dir.path / "all.safetensors";
    io::save_safetensors(path, list, md);
    CHECK(slurp(path).size() == bytes.size());
    CHECK(std::memcmp(slurp(path).data(), bytes.data(), bytes.size()) == 0);
    CHECK(dir.listing() == std::vector<std::string>{"all.safetensors"});  // no temporary left over
    for (int from_file = 0; from_file < 2; ++from_file) {
        CAPTURE(from_file);
        const io::SafetensorsFile f = from_file ? io::SafetensorsFile::open(path) : io::SafetensorsFile::from_memory(bytes);
        REQUIRE(f.size() == 7);
        CHECK(f.metadata() == md);
        CHECK(f.at("a.bf16").dtype == "BF16");
        CHECK(f.at("b.f32").shape == b.shape());
        CHECK(f.at("logit_scale").shape == Shape{});
        CHECK(f.at("z.empty").shape == (Shape{0, 3}));
        CHECK(same_values(f.load<bf16>("a.bf16").view(), a.view()));
        CHECK(same_values(f.load<float>("b.f32").view(), b.view()));
        CHECK(same_values(f.load<f16>("c.f16").view(), c.view()));
        CHECK(same_values(f.load<double>("d.f64").view(), d.view()));
        CHECK(same_values(f.load<std::int32_t>("e.i32").view(), e.view()));
        CHECK(f.load<float>("logit_scale")[0] == 4.6052f);
        CHECK(f.load<float>("z.empty").numel() == 0);
        // Conversions: widening is exact, narrowing rounds to nearest even like cast<>.
        CHECK(same_values(f.load<double>("a.bf16").view(), a.view()));
        CHECK(same_values(f.load<float>("c.f16").view(), c.view()));
        const auto b_as_bf16 = f.load<bf16>("b.f32");
        const auto d_as_f32 = f.load<float>("d.f64");
        const auto d_as_f16 = f.load<f16>("d.f64");
        const auto a_as_f16 = f.load<f16>("a.bf16");
        for (std::int64_t i = 0; i < b.numel(); ++i) CHECK(b_as_bf16[i] == cast<bf16>(b[i]));
        for (std::int64_t i = 0; i < d.numel(); ++i) CHECK(d_as_f32[i] == cast<float>(d[i]));
        for (std::int64_t i = 0; i < d.numel(); ++i) CHECK(d_as_f16[i] == cast<f16>(d[i]));
        for (std::int64_t i = 0; i < a.numel(); ++i) CHECK(a_as_f16[i] == cast<f16>(a[i]));
        // Into a view of another shape with the same element count.
        Tensor<float> flat(Shape{42});
        f.read<float>("b.f32", flat);
        CHECK(same_values(flat.view(), b.view()));
        Tensor<float> wrong(Shape{41});
        expect_error<ShapeError>([&] { f.read<float>("b.f32", wrong); }, {"b.f32", "42", "41"});
        // Floats do not read as integers, nor integers as floats.
        expect_error([&] { (void)f.load<std::int32_t>("b.f32"); }, {"b.f32", "F32", "unsupported dtype"});
        expect_error([&] { (void)f.load<float>("e.i32"); }, {"e.i32", "I32", "unsupported dtype"});
        expect_error([&] { (void)f.load<float>("nope"); }, {"no tensor 'nope'"});
    }
}

TEST_CASE("safetensors: I64 reads into int32 with a range check; other dtypes are listed but not read") {
    std::vector<std::uint8_t> data(16 + 3, 0);
    const std::int64_t v0 = -7, v1 = std::int64_t(1) << 40;
    std::memcpy(data.data(), &v0, 8);
    std::memcpy(data.data() + 8, &v1, 8);
    const auto bytes = raw_file(R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
                                R"("mask":{"dtype":"U8","shape":[3],"data_offsets":[16,19]}})",
                                data);
    const auto f = parse(bytes);
    CHECK(f.at("mask").element_size == 1);
    CHECK(!f.at("mask").pick_dtype());
    Tensor<std::int32_t> two(Shape{2});
    expect_error([&] { f.read<std::int32_t>("ids", two); }, {"ids", "does not fit in int32"});
    data.assign(16 + 3, 0);
    const std::int64_t w0 = -7, w1 = 2147483647;
    std::memcpy(data.data(), &w0, 8);
    std::memcpy(data.data() + 8, &w1, 8);
    const auto g = parse(raw_file(R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
                                  R"("mask":{"dtype":"U8","shape":[3],"data_offsets":[16,19]}})",
                                  data));
    g.read<std::int32_t>("ids", two);
    CHECK(two[0] == -7);
    CHECK(two[1] == 2147483647);
    expect_error([&] { (void)g.load<float>("mask"); }, {"corrupt.safetensors", "'mask'", "unsupported dtype U8"});
    expect_error([&] { (void)g.load<std::int32_t>("mask"); }, {"'mask'", "unsupported dtype U8"});
}

TEST_CASE("safetensors: corrupt files give a FormatError naming the file and the tensor") {
    const std::vector<std::uint8_t> d8(8, 0);
    const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    CHECK(parse(raw_file(ok, d8)).size() == 1);  // the baseline the cases below break

    SUBCASE("shorter than the length field") {
        std::vector<std::byte> tiny(5, std::byte{0});
        expect_error([&] { parse(tiny); }, {"corrupt.safetensors", "too small"});
    }
    SUBCASE("header length beyond the file") {
        auto bytes = raw_file(ok, d8);
        bytes[0] = std::byte(0xff);
        bytes[1] = std::byte(0x7f);
        expect_error([&] { parse(bytes); }, {"corrupt.safetensors", "header length 32767 exceeds the file"});
        for (int i = 0; i < 8; ++i) bytes[std::size_t(i)] = std::byte(0xff);  // 2^64 - 1: no overflow
        expect_error([&] { parse(bytes); }, {"exceeds the file"});
    }
    SUBCASE("bad JSON") {
        expect_error([&] { parse(raw_file(R"({"a":{"dtype":"F32",)", d8)); }, {"corrupt.safetensors", "bad header JSON"});
        expect_error([&] { parse(raw_file(R"({"a":1}x)", {})); }, {"bad header JSON"});
        expect_error([&] { parse(raw_file(R"([1, 2])", {})); }, {"does not start with '{'"});
        expect_error([&] { parse(raw_file(R"({"a":7})", {})); }, {"tensor 'a'", "expected an object"});
        expect_error([&] { parse(raw_file(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", d8)); },
                     {"tensor 'a'", "dtype"});
        expect_error([&] { parse(raw_file(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", d8)); },
                     {"tensor 'a'", "shape"});
        expect_error([&] { parse(raw_file(R"({"a":{"dtype":"F32","shape":[2]}})", d8)); }, {"tensor 'a'", "data_offsets"});
        expect_error([&] { parse(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", d8)); },
                     {"tensor 'a'", "two non-negative integers"});
        expect_error([&] { parse(raw_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8)); },
                     {"tensor 'a'", "non-negative integers"});
        expect_error([&] { parse(raw_file(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", d8)); },
                     {"tensor 'a'", "non-negative integers"});
        expect_error([&] { parse(raw_file(R"({"a":{"dtype":"F32","shape":[1,1,1,1,1,1,2],"data_offsets":[0,8]}})", d8)); },
                     {"tensor 'a'", "rank 7"});
        expect_error([&] { parse(raw_file(R"({"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", d8)); },
                     {"__metadata__", "\"k\"", "expected a string"});
    }
    SUBCASE("trailing spaces (the format's padding) are fine") {
        CHECK(parse(raw_file(ok + "     ", d8)).at("a").shape == Shape{2});
    }
    SUBCASE("offsets past the end") {
        expect_error([&] { parse(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", d8)); },
                     {"corrupt.safetensors", "tensor 'a'", "past the end of the data section (8 bytes)"});
        expect_error([&] { parse(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", d8)); },
                     {"tensor 'a'", "backwards"});
    }
    SUBCASE("byte count does not match dtype x shape") {
        expect_error([&] { parse(raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8)); },
                     {"corrupt.safetensors", "tensor 'a'", "hold 8 bytes but F32 [3] needs 12"});
        expect_error([&] { parse(raw_file(R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,8]}})", d8)); },
                     {"tensor 'a'", "BF16 [2] needs 4"});
        // Dimensions whose product overflows 64 bits.
        expect_error(
            [&] {
                parse(raw_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,8]}})", d8));
            },
            {"tensor 'a'", "too large"});
        // A zero dimension makes an empty tensor whatever the others are.
        const auto f = parse(raw_file(
            R"({"e":{"dtype":"F32","shape":[1000000,0,1000000],"data_offsets":[0,0]},)"
            R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
            d8));
        CHECK(f.at("e").numel() == 0);
    }
    SUBCASE("overlapping ranges, gaps and trailing bytes") {
        const std::vector<std::uint8_t> d12(12, 0);
        expect_error(
            [&] {
                parse(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                               d12));
            },
            {"corrupt.safetensors", "tensor 'b' [4, 12) overlaps tensor 'a' [0, 8)"});
        expect_error(
            [&] {
                parse(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                               R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                               d12));
            },
            {"gap of 4 bytes before tensor 'b'", "after tensor 'a'"});
        expect_error([&] { parse(raw_file(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8)); },
                     {"gap of 4 bytes before tensor 'b'"});
        expect_error([&] { parse(raw_file(ok, d12)); }, {"4 trailing bytes after the last tensor 'a'"});
        expect_error([&] { parse(raw_file(R"({})", d8)); }, {"8 trailing bytes"});
        CHECK(parse(raw_file(R"({})", {})).size() == 0);
    }
    SUBCASE("unsupported dtype") {
        expect_error([&] { parse(raw_file(R"({"q":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,8]}})", d8)); },
                     {"corrupt.safetensors", "tensor 'q'", "unsupported dtype 'Q4_K'"});
    }
    SUBCASE("duplicate names") {
        const std::vector<std::uint8_t> d16(16, 0);
        expect_error(
            [&] {
                parse(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                               d16));
            },
            {"corrupt.safetensors", "duplicate tensor name 'a'"});
        expect_error([&] { parse(raw_file(R"({"__metadata__":{},"__metadata__":{}})", {})); },
                     {"duplicate \"__metadata__\""});
    }
    SUBCASE("a file that does not exist, or a folder") {
        expect_error<IoError>([&] { io::SafetensorsFile::open("/nonexistent/x.safetensors"); }, {"/nonexistent/x.safetensors"});
        expect_error<IoError>([&] { io::SafetensorsFile::open(fs::temp_directory_path()); }, {"not a regular file"});
    }
}

TEST_CASE("safetensors: sharded sets through model.safetensors.index.json") {
    TempDir dir("sharded");
    std::vector<Tensor<float>> ts;
    std::vector<io::TensorToWrite> list;
    for (int i = 0; i < 7; ++i) ts.push_back(random_tensor<float>(Shape{10 + i, 3}, std::uint64_t(10 + i)));
    for (int i = 0; i < 7; ++i) list.push_back(io::tensor_to_write("layer." + std::to_string(i) + ".weight", ts[std::size_t(i)].view()));
    const fs::path index = io::save_safetensors_sharded(dir.path, list, 400, {{"format", "pt"}});
    CHECK(index == dir.path / "model.safetensors.index.json");
    // 120..192 bytes each, at most 400 per shard: [0,1,2] [3,4] [5,6].
    CHECK(dir.listing() == std::vector<std::string>{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                                    "model-00003-of-00003.safetensors", "model.safetensors.index.json"});
    const io::Json j = io::json::parse(slurp(index));
    std::int64_t total = 0;
    for (const auto& t : ts) total += std::int64_t(t.bytes());
    CHECK(j["metadata"]["total_size"].as_int64() == total);
    CHECK(j["weight_map"]["layer.4.weight"].as_string() == "model-00002-of-00003.safetensors");

    for (const fs::path& p : {dir.path, index}) {
        const io::SafetensorsSet s = io::SafetensorsSet::open(p);
        CHECK(s.files().size() == 3);
        CHECK(s.names().size() == 7);
        CHECK(s.dir() == dir.path);
        for (int i = 0; i < 7; ++i) {
            const std::string name = "layer." + std::to_string(i) + ".weight";
            CHECK(s.find(name)->shape == ts[std::size_t(i)].shape());
            CHECK(same_values(s.load<float>(name).view(), ts[std::size_t(i)].view()));
        }
        CHECK(!s.contains("layer.7.weight"));
        expect_error([&] { (void)s.load<float>("layer.7.weight"); }, {"no tensor 'layer.7.weight'"});
    }
    // A single file opens through the same class, by path or by folder.
    TempDir one("single");
    io::save_safetensors(one.path / "model.safetensors", list);
    CHECK(io::SafetensorsSet::open(one.path).names().size() == 7);
    CHECK(io::SafetensorsSet::open(one.path / "model.safetensors").files().size() == 1);

    auto write_index = [&](const std::string& text) {
        std::ofstream(index, std::ios::binary | std::ios::trunc) << text;
    };
    const std::string shard1 = "\"model-00001-of-00003.safetensors\"";
    write_index(R"({"weight_map":{"layer.0.weight":)" + shard1 + R"(,"layer.9.weight":)" + shard1 + "}}");
    expect_error([&] { io::SafetensorsSet::open(dir.path); },
                 {"model.safetensors.index.json", "tensor 'layer.9.weight' is not in shard",
                  "tensor 'layer.1.weight' of shard", "tensor 'layer.2.weight' of shard"});
    write_index(R"({"weight_map":{"layer.0.weight":"../model-00001-of-00003.safetensors"}})");
    expect_error([&] { io::SafetensorsSet::open(dir.path); }, {"layer.0.weight", "plain file name"});
    write_index(R"({"weight_map":{"layer.0.weight":)" + shard1 + R"(,"layer.0.weight":)" + shard1 + "}}");
    expect_error([&] { io::SafetensorsSet::open(dir.path); }, {"duplicate weight_map entry 'layer.0.weight'"});
    write_index(R"({"weight_map":[]})");
    expect_error([&] { io::SafetensorsSet::open(dir.path); }, {"weight_map"});
    write_index(R"({"weight_map":{"layer.0.weight":"missing.safetensors"}})");
    expect_error<IoError>([&] { io::SafetensorsSet::open(dir.path); }, {"missing.safetensors"});
    expect_error<IoError>([&] { io::SafetensorsSet::open(dir.path / "nothing-here"); }, {"nothing-here"});
}

TEST_CASE("safetensors: the atomic writer leaves no partial file on failure") {
    TempDir dir("atomic");
    auto t = random_tensor<float>(Shape{64, 64}, 7);
    const fs::path path = dir.path / "ckpt.safetensors";
    io::save_safetensors(path, {io::tensor_to_write("w", t.view())});
    const std::string before = slurp(path);
    REQUIRE(before.size() > 16384);

    SUBCASE("bad names: nothing is written") {
        expect_error<Error>([&] { io::save_safetensors(path, {io::tensor_to_write("x", t.view()), io::tensor_to_write("x", t.view())}); },
                            {"duplicate tensor name 'x'"});
        expect_error<Error>([&] { io::save_safetensors(path, {io::tensor_to_write("__metadata__", t.view())}); },
                            {"invalid tensor name"});
    }
    SUBCASE("the rename fails (the destination is a folder)") {
        fs::create_directory(dir.path / "taken");
        expect_error<IoError>([&] { io::save_safetensors(dir.path / "taken", {io::tensor_to_write("w", t.view())}); },
                              {"cannot rename", "taken"});
        CHECK(fs::is_directory(dir.path / "taken"));
        fs::remove(dir.path / "taken");
    }
    SUBCASE("the destination folder does not exist") {
        expect_error<IoError>([&] { io::save_safetensors(dir.path / "no" / "x.safetensors", {io::tensor_to_write("w", t.view())}); },
                              {"x.safetensors"});
    }
#if defined(__linux__)
    SUBCASE("a write fails half way (file size limit)") {
        // RLIMIT_FSIZE makes write() fail with EFBIG once the temporary reaches 4096 bytes
        // (SIGXFSZ ignored so that the process survives); the limit is restored afterwards.
        rlimit old{};
        REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
        auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
        rlimit lim = old;
        lim.rlim_cur = 4096;
        REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
        bool threw = false;
        std::string msg;
        try {
            auto big = random_tensor<float>(Shape{128, 64}, 8);
            io::save_safetensors(path, {io::tensor_to_write("w", big.view())});
        } catch (const IoError& e) {
            threw = true;
            msg = e.what();
        }
        REQUIRE(setrlimit(RLIMIT_FSIZE, &old) == 0);
        std::signal(SIGXFSZ, old_handler);
        CHECK(threw);
        CHECK(msg.find("ckpt.safetensors") != std::string::npos);
    }
#endif
    // Whatever failed, the old file is intact and no temporary is left.
    CHECK(dir.listing() == std::vector<std::string>{"ckpt.safetensors"});
    CHECK(slurp(path) == before);
}
