// pickscore/collect/pool.hpp — the image pool of the collection server: which prompts there are,
// pickscore-requires: pickscore::collect
// their images, and the generator that made each.
//
// A pool is a folder, described in one of two ways:
//
// 1. A manifest, DIR/pool.jsonl: one JSON object per line,
//        {"prompt": "a red cube on a table", "image": "cube/sdxl.png", "generator": "sdxl"}
//    "caption" may stand for "prompt" and "model" for "generator" (Pick-a-Pic's names); "generator"
//    may be left out (then it comes from the file name, as below). Image paths are relative to DIR and
//    may not be absolute or contain "..". Empty lines are skipped; a bad line is a FormatError naming
//    the file and line.
// 2. Without a manifest, one sub-folder per prompt:
//        DIR/a_red_cube_on_a_table/sdxl.png, DIR/a_red_cube_on_a_table/sd15-2.png, ...
//    The prompt is the first line of the sub-folder's prompt.txt when there is one, else the folder's
//    name with '_' read as a space. Every *.png, *.jpg, *.jpeg and *.webp inside is an image of that
//    prompt; its generator is the file name without its extension and without a trailing "-<digits>"
//    or "_<digits>" (so sdxl.png, sdxl-2.png and sdxl_3.png are all "sdxl"). Hidden entries and the
//    folder DIR/generated/ (where `--generate` writes) are left out. Images directly in DIR have no
//    prompt and are reported, not used.
// Prompts with fewer than two images cannot form a pair; the server reports them.
#pragma once

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "../core/error.hpp"
#include "../io/json.hpp"

namespace pickscore::collect {

struct PoolEntry {
    std::string prompt;
    std::filesystem::path image;  // relative to the pool folder
    std::string generator;
};

struct PoolScan {
    std::vector<PoolEntry> entries;
    std::vector<std::string> warnings;  // things left out, for the server log
    bool from_manifest = false;
};

inline bool is_image_file_name(const std::filesystem::path& p) {
    std::string ext = p.extension().string();
    for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
    return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".webp";
}

// "sdxl-2.png" -> "sdxl"; "sd15.png" -> "sd15"; "7.png" -> "7".
inline std::string generator_from_file_name(const std::filesystem::path& p) {
    std::string stem = p.stem().string();
    std::size_t end = stem.size();
    while (end > 0 && std::isdigit(static_cast<unsigned char>(stem[end - 1]))) --end;
    if (end > 1 && end < stem.size() && (stem[end - 1] == '-' || stem[end - 1] == '_')) stem.resize(end - 1);
    return stem.empty() ? std::string("unknown") : stem;
}

// A relative path without "..", "." or root parts (what a manifest may name).
inline bool is_safe_relative_path(const std::filesystem::path& p) {
    if (p.empty() || p.is_absolute() || p.has_root_name() || p.has_root_directory()) return false;
    for (const auto& part : p) {
        const std::string s = part.string();
        if (s == ".." || s == "." || s.empty()) return false;
    }
    return true;
}

namespace detail {

inline std::string trim_spaces(std::string s) {
    const std::size_t b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return {};
    const std::size_t e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

inline PoolScan read_pool_manifest(const std::filesystem::path& manifest) {
    std::ifstream f(manifest, std::ios::binary);
    require<IoError>(bool(f), "pool manifest '", manifest.string(), "': cannot open");
    PoolScan scan;
    scan.from_manifest = true;
    std::string line;
    std::size_t n = 0;
    while (std::getline(f, line)) {
        ++n;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        const std::string where = "pool manifest '" + manifest.string() + "' line " + std::to_string(n) + ": ";
        try {
            const io::Json j = io::json::parse(line);
            require<FormatError>(j.is_object(), "expected a JSON object");
            const io::Json* p = j.find("prompt");
            if (!p) p = j.find("caption");
            require<FormatError>(p && p->is_string(), "\"prompt\" must be a string");
            const io::Json* im = j.find("image");
            require<FormatError>(im && im->is_string(), "\"image\" must be a string (a path relative to the pool)");
            PoolEntry e;
            e.prompt = trim_spaces(p->as_string());
            require<FormatError>(!e.prompt.empty(), "empty prompt");
            e.image = std::filesystem::path(im->as_string()).lexically_normal();
            require<FormatError>(is_safe_relative_path(e.image), "image path '", im->as_string(),
                                 "' must be relative to the pool folder, without '..'");
            const io::Json* g = j.find("generator");
            if (!g) g = j.find("model");
            if (g) {
                require<FormatError>(g->is_string() && !g->as_string().empty(), "\"generator\" must be a non-empty string");
                e.generator = g->as_string();
            } else {
                e.generator = generator_from_file_name(e.image);
            }
            scan.entries.push_back(std::move(e));
        } catch (const Error& e) {
            fail<FormatError>(where, e.what());
        }
    }
    return scan;
}

}  // namespace detail

// Reads the pool's description (see the top of this file). Does not open the images.
inline PoolScan scan_pool(const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    require<IoError>(fs::is_directory(dir, ec), "pool '", dir.string(), "' is not a folder");
    const fs::path manifest = dir / "pool.jsonl";
    if (fs::exists(manifest, ec)) return detail::read_pool_manifest(manifest);
    PoolScan scan;
    std::vector<fs::path> subdirs;
    for (const auto& e : fs::directory_iterator(dir)) {
        const std::string name = e.path().filename().string();
        if (name.empty() || name[0] == '.') continue;
        if (e.is_directory()) {
            if (name != "generated") subdirs.push_back(e.path());
        } else if (is_image_file_name(e.path())) {
            scan.warnings.push_back("'" + e.path().string() +
                                    "' lies directly in the pool folder: put images in a sub-folder per prompt, or list them in pool.jsonl");
        }
    }
    std::sort(subdirs.begin(), subdirs.end());
    for (const fs::path& sub : subdirs) {
        std::string prompt;
        if (std::ifstream pf(sub / "prompt.txt"); pf) std::getline(pf, prompt);
        prompt = detail::trim_spaces(prompt);
        if (prompt.empty()) {
            prompt = sub.filename().string();
            std::replace(prompt.begin(), prompt.end(), '_', ' ');
        }
        std::vector<fs::path> images;
        for (const auto& e : fs::directory_iterator(sub)) {
            const std::string name = e.path().filename().string();
            if (!name.empty() && name[0] != '.' && e.is_regular_file() && is_image_file_name(e.path())) images.push_back(e.path());
        }
        std::sort(images.begin(), images.end());
        for (const fs::path& im : images)
            scan.entries.push_back({prompt, im.lexically_relative(dir), generator_from_file_name(im)});
    }
    return scan;
}

}  // namespace pickscore::collect
