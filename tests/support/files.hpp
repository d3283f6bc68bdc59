// Helpers shared by the test programs: an expected error with the words its message must contain,
// whole-file reads and writes, and a scratch folder removed at scope exit.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

namespace pickscore::test {

// Runs f, which must throw E (or a class derived from it); every part must occur in the message.
template <class E>
void expect_error_of(const std::function<void()>& f, const std::vector<std::string>& parts) {
    try {
        f();
        FAIL("no error thrown; expected one mentioning " << (parts.empty() ? std::string("anything") : parts.front()));
    } catch (const E& e) {
        const std::string msg = e.what();
        for (const auto& p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, "'" << p << "' not in: " << msg);
    }
}

// A whole file written from / read into a string (binary).
inline void write_text(const std::filesystem::path& p, const std::string& s) {
    std::ofstream f(p, std::ios::binary);
    f << s;
}
inline std::string read_text(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// A fresh, empty folder <system temp>/pickscore-<tag>-<pid>, removed at scope exit (the process id
// keeps test programs that run at the same time apart).
struct TempDir {
    std::filesystem::path path;
    explicit TempDir(const std::string& tag) {
        path = std::filesystem::temp_directory_path() / ("pickscore-" + tag + "-" + std::to_string(::getpid()));
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    // The names of the entries in the folder, sorted.
    std::vector<std::string> listing() const {
        std::vector<std::string> names;
        for (const auto& e : std::filesystem::directory_iterator(path)) names.push_back(e.path().filename().string());
        std::sort(names.begin(), names.end());
        return names;
    }
};

// Five images of tests/data/images (images_dir) in the formats and shapes the scorer tests want:
// PNG RGB landscape, baseline JPEG, lossy WebP, a small portrait PNG, a grey PNG.
inline std::vector<std::filesystem::path> sample_images(const std::filesystem::path& images_dir) {
    return {images_dir / "png_rgb8_640x480.png", images_dir / "jpg_baseline_444_500x375.jpg",
            images_dir / "webp_lossy_333x221.webp", images_dir / "png_rgb8_67x100.png",
            images_dir / "png_gray8_300x400.png"};
}

}  // namespace pickscore::test
