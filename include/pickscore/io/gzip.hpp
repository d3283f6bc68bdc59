// pickscore/io/gzip.hpp — reading whole files, and gzip decompression through zlib.
//
// gunzip() validates the stream completely: a corrupt or truncated stream, trailing garbage
// that is not another gzip member, or output beyond max_bytes (a decompression-bomb limit)
// throws FormatError naming the source. Concatenated gzip members are decoded in sequence.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <string_view>

#include "../core/error.hpp"

namespace pickscore::io {

// Reads a whole file into memory; IoError when it cannot be opened or read.
inline std::string read_file(const std::filesystem::path& path) {
    std::ifstream f(path, std::ios::binary);
    require<IoError>(bool(f), "cannot open '", path.string(), "'");
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) fail<IoError>("'", path.string(), "' is a directory, not a file");
    std::string data;
    f.seekg(0, std::ios::end);
    const std::streamoff size = f.tellg();
    require<IoError>(size >= 0, "cannot determine the size of '", path.string(), "'");
    data.resize(std::size_t(size));
    f.seekg(0, std::ios::beg);
    if (size > 0) f.read(data.data(), size);
    require<IoError>(bool(f), "cannot read '", path.string(), "'");
    return data;
}

// Decompresses a gzip stream held in memory. `what` names the source in error messages.
inline std::string gunzip(std::string_view in, std::string_view what = "gzip data",
                          std::size_t max_bytes = std::size_t(256) << 20) {
    require<FormatError>(in.size() >= 18, what, ": too short to be a gzip file (", in.size(), " bytes)");
    require<FormatError>(static_cast<unsigned char>(in[0]) == 0x1F && static_cast<unsigned char>(in[1]) == 0x8B,
                         what, ": not a gzip file (bad magic bytes)");
    std::string out;
    z_stream zs{};
    // 16 + MAX_WBITS: gzip wrapper only (header and CRC-32 / length trailer are checked by zlib).
    require<FormatError>(inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK, what, ": zlib initialisation failed");
    struct Guard {
        z_stream* z;
        ~Guard() { inflateEnd(z); }
    } guard{&zs};
    require<FormatError>(in.size() < std::numeric_limits<uInt>::max(), what, ": too large for one zlib call");
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = uInt(in.size());
    char buf[1 << 16];
    for (;;) {
        zs.next_out = reinterpret_cast<Bytef*>(buf);
        zs.avail_out = sizeof buf;
        const int rc = inflate(&zs, Z_NO_FLUSH);
        const std::size_t produced = sizeof buf - zs.avail_out;
        require<FormatError>(out.size() + produced <= max_bytes, what, ": decompressed size exceeds the limit of ",
                             max_bytes, " bytes");
        out.append(buf, produced);
        const std::size_t at = in.size() - zs.avail_in;
        if (rc == Z_OK) continue;
        if (rc == Z_STREAM_END) {
            if (zs.avail_in == 0) break;
            // Another member may follow (gzip allows concatenation); anything else is an error.
            require<FormatError>(zs.avail_in >= 2 && static_cast<unsigned char>(in[at]) == 0x1F &&
                                     static_cast<unsigned char>(in[at + 1]) == 0x8B,
                                 what, ": unexpected data after the gzip stream at byte ", at);
            require<FormatError>(inflateReset(&zs) == Z_OK, what, ": zlib reset failed");
            continue;
        }
        if (rc == Z_BUF_ERROR) fail<FormatError>(what, ": truncated gzip stream (", in.size(), " bytes)");
        fail<FormatError>(what, ": corrupt gzip stream (", zs.msg ? zs.msg : "zlib error", ") near byte ", at);
    }
    return out;
}

inline std::string read_gzip_file(const std::filesystem::path& path, std::size_t max_bytes = std::size_t(256) << 20) {
    return gunzip(read_file(path), path.string(), max_bytes);
}

}  // namespace pickscore::io
