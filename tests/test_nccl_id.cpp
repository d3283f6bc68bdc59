// The NCCL id exchange of train/nccl_id.hpp (no NCCL needed): hex, the file format, the atomic
// write, waiting for the file, leftovers of other launches, time-outs and garbage files.
#include <doctest/doctest.h>

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <pickscore/train/nccl_id.hpp>

using namespace pickscore;
using namespace pickscore::train;
namespace fs = std::filesystem;
using std::chrono::milliseconds;

namespace {

std::vector<std::byte> some_id(unsigned seed) {
    std::vector<std::byte> id(nccl_id_size);
    for (std::size_t i = 0; i < id.size(); ++i) id[i] = std::byte((i * 37u + seed * 11u + 5u) & 0xffu);
    return id;
}

// A fresh folder under the system's temporary directory, removed at the end.
struct TempDir {
    fs::path path;
    TempDir() {
        static int n = 0;
        path = fs::temp_directory_path() / ("pickscore_nccl_id_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

void write_text(const fs::path& p, const std::string& text) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << text;
}

std::string what_of(auto&& fn) {
    try {
        fn();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("hex encoding of the id round-trips and rejects bad text") {
    const auto id = some_id(1);
    const std::string hex = hex_encode(id);
    CHECK(hex.size() == 2 * nccl_id_size);
    CHECK(hex.substr(0, 6) == "10355a");  // bytes 16, 53, 90
    CHECK(hex_decode(hex, nccl_id_size, "id") == id);
    std::string upper = hex;
    for (char& c : upper) c = char(std::toupper(static_cast<unsigned char>(c)));
    CHECK(hex_decode(upper, nccl_id_size, "id") == id);
    CHECK_THROWS_AS(hex_decode(hex.substr(1), nccl_id_size, "id"), FormatError);
    std::string bad = hex;
    bad[17] = 'g';
    const std::string msg = what_of([&] { hex_decode(bad, nccl_id_size, "PICKSCORE_NCCL_ID"); });
    CHECK(msg.find("PICKSCORE_NCCL_ID") != std::string::npos);
    CHECK(msg.find("position 17") != std::string::npos);
}

TEST_CASE("the id file format round-trips") {
    const auto id = some_id(2);
    for (const std::string job : {"", "slurm:77.0"}) {
        const std::string text = format_nccl_id_file(id, 4, job);
        CHECK(text.rfind("pickscore-nccl-id 1\n", 0) == 0);
        const NcclIdFile f = parse_nccl_id_file(text, "x");
        CHECK(f.world == 4);
        CHECK(f.job == job);
        CHECK(f.id == id);
    }
    CHECK_THROWS_AS(format_nccl_id_file(std::vector<std::byte>(5), 2, ""), Error);
    CHECK_THROWS_AS(format_nccl_id_file(id, 2, "has space"), Error);
}

TEST_CASE("garbage id files are FormatErrors naming the file") {
    const std::string good = format_nccl_id_file(some_id(3), 2, "j");
    struct Case {
        const char* name;
        std::string text;
    };
    const std::string hex = hex_encode(some_id(3));
    const Case cases[] = {
        {"empty", ""},
        {"other magic", "hello world\n"},
        {"other version", "pickscore-nccl-id 2\nworld 2\njob j\nid " + hex + "\n"},
        {"no id", "pickscore-nccl-id 1\nworld 2\njob j\n"},
        {"short id", "pickscore-nccl-id 1\nworld 2\njob j\nid abcd\n"},
        {"bad world", "pickscore-nccl-id 1\nworld two\njob j\nid " + hex + "\n"},
        {"zero world", "pickscore-nccl-id 1\nworld 0\njob j\nid " + hex + "\n"},
        {"repeated key", "pickscore-nccl-id 1\nworld 2\nworld 2\njob j\nid " + hex + "\n"},
        {"unknown key", "pickscore-nccl-id 1\nworld 2\njob j\nid " + hex + "\nextra 1\n"},
        {"key without value", "pickscore-nccl-id 1\nworld 2\njob j\nid " + hex + "\nextra\n"},
    };
    CHECK_NOTHROW(parse_nccl_id_file(good, "f"));
    for (const Case& c : cases) {
        CAPTURE(c.name);
        CHECK_THROWS_AS(parse_nccl_id_file(c.text, "/some/nccl_id"), FormatError);
        CHECK(what_of([&] { parse_nccl_id_file(c.text, "/some/nccl_id"); }).find("/some/nccl_id") != std::string::npos);
    }
}

TEST_CASE("write_nccl_id_file is atomic and wait_for_nccl_id_file reads it") {
    TempDir dir;
    const fs::path file = dir.path / "sub" / "nccl_id";  // the folder is created
    const auto id = some_id(4);
    write_nccl_id_file(file, id, 3, "job1");
    CHECK(fs::exists(file));
    int entries = 0;
    for (const auto& e : fs::directory_iterator(file.parent_path())) {
        (void)e;
        ++entries;
    }
    CHECK(entries == 1);  // no temporary file left behind
    CHECK(wait_for_nccl_id_file(file, 3, "job1", milliseconds(5000)) == id);
    // Rewriting replaces it.
    const auto id2 = some_id(5);
    write_nccl_id_file(file, id2, 3, "job1");
    CHECK(wait_for_nccl_id_file(file, 3, "job1", milliseconds(5000)) == id2);
}

TEST_CASE("waiting ranks poll until rank 0 writes the file") {
    TempDir dir;
    const fs::path file = dir.path / "nccl_id";
    const auto id = some_id(6);
    std::thread writer([&] {
        std::this_thread::sleep_for(milliseconds(150));
        write_nccl_id_file(file, id, 2, "");
    });
    std::vector<std::byte> got;
    CHECK_NOTHROW(got = wait_for_nccl_id_file(file, 2, "", milliseconds(60000)));
    writer.join();
    CHECK(got == id);
}

TEST_CASE("a missing file times out with a clear error") {
    TempDir dir;
    const fs::path file = dir.path / "nccl_id";
    const std::string msg = what_of([&] { wait_for_nccl_id_file(file, 2, "", milliseconds(100)); });
    CHECK(msg.find(file.string()) != std::string::npos);
    CHECK(msg.find("does not exist") != std::string::npos);
    CHECK(msg.find("rank 0") != std::string::npos);
}

TEST_CASE("a leftover file of another launch is waited past, then replaced") {
    TempDir dir;
    const fs::path file = dir.path / "nccl_id";
    write_nccl_id_file(file, some_id(7), 2, "old-job");
    const std::string msg = what_of([&] { wait_for_nccl_id_file(file, 2, "new-job", milliseconds(100)); });
    CHECK(msg.find("another launch") != std::string::npos);
    CHECK(msg.find("old-job") != std::string::npos);

    const auto id = some_id(8);
    std::thread writer([&] {
        std::this_thread::sleep_for(milliseconds(150));
        write_nccl_id_file(file, id, 2, "new-job");
    });
    std::vector<std::byte> got;
    CHECK_NOTHROW(got = wait_for_nccl_id_file(file, 2, "new-job", milliseconds(60000)));
    writer.join();
    CHECK(got == id);
}

TEST_CASE("a file of this launch with another world size, or garbage, fails at once") {
    TempDir dir;
    const fs::path file = dir.path / "nccl_id";
    write_nccl_id_file(file, some_id(9), 4, "j");
    // A long time-out: returning with these errors shows that the reader did not wait for it.
    const std::string msg = what_of([&] { wait_for_nccl_id_file(file, 2, "j", milliseconds(60000)); });
    CHECK(msg.find("is for 4 ranks") != std::string::npos);
    write_text(file, "not an id file\n");
    CHECK_THROWS_AS(wait_for_nccl_id_file(file, 2, "j", milliseconds(60000)), FormatError);
}

TEST_CASE("the launch's job identity comes from the launcher's environment") {
    ::setenv("PICKSCORE_JOB_ID", "run-42", 1);
    CHECK(nccl_launch_job() == "run-42");
    ::unsetenv("PICKSCORE_JOB_ID");
    ::setenv("SLURM_JOB_ID", "9", 1);
    ::setenv("SLURM_STEP_ID", "1", 1);
    CHECK(nccl_launch_job() == "slurm:9.1");
    ::unsetenv("SLURM_JOB_ID");
    ::unsetenv("SLURM_STEP_ID");
}
