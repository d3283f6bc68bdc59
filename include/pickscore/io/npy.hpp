// pickscore/io/npy.hpp — a minimal NumPy .npy writer and reader for float32 tensors.
//
// Format version 1.0: the magic "\x93NUMPY", version 1 0, a little-endian uint16 header length,
// then an ASCII dict {'descr': '<f4', 'fortran_order': False, 'shape': (...), } padded with
// spaces and a final newline so the data starts at a multiple of 64 bytes, then the data in C
// order. `numpy.load` reads it back.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"

namespace pickscore::io {

// The .npy bytes of a float32 tensor (header + data).
inline std::vector<std::uint8_t> npy_bytes(TensorView<const float, Cpu> t) {
    static_assert(sizeof(float) == 4, "npy: float must be 32-bit");
    const std::uint16_t probe = 1;
    unsigned char first = 0;
    std::memcpy(&first, &probe, 1);
    require<Error>(first == 1, "npy: only little-endian hosts are supported");
    std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
    for (int d = 0; d < t.rank(); ++d) dict += std::to_string(t.size(d)) + (t.rank() == 1 || d + 1 < t.rank() ? "," : "") + (d + 1 < t.rank() ? " " : "");
    dict += "), }";
    const std::size_t prefix = 10;  // magic (6) + version (2) + header length (2)
    std::size_t total = prefix + dict.size() + 1;
    const std::size_t padded = (total + 63) / 64 * 64;
    dict.append(padded - total, ' ');
    dict += '\n';
    const std::size_t hlen = dict.size();
    std::vector<std::uint8_t> out(prefix + hlen + t.bytes());
    std::memcpy(out.data(), "\x93NUMPY\x01\x00", 8);
    out[8] = std::uint8_t(hlen & 0xff);
    out[9] = std::uint8_t(hlen >> 8);
    std::memcpy(out.data() + prefix, dict.data(), hlen);
    if (t.bytes()) std::memcpy(out.data() + prefix + hlen, t.data(), t.bytes());
    return out;
}

// Writes a float32 tensor as .npy, through a temporary file renamed into place.
inline void save_npy(const std::filesystem::path& path, TensorView<const float, Cpu> t) {
    const std::vector<std::uint8_t> bytes = npy_bytes(t);
    std::filesystem::path tmp = path;
    tmp += ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        if (!f) fail<IoError>("save_npy: cannot open '", tmp.string(), "' for writing");
        f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
        if (!f) fail<IoError>("save_npy: writing '", tmp.string(), "' failed");
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) fail<IoError>("save_npy: cannot rename '", tmp.string(), "' to '", path.string(), "': ", ec.message());
}

// Reads a little-endian float32 C-order .npy (what save_npy writes; numpy's own files of that
// dtype too).
inline Tensor<float, Cpu> load_npy(const std::filesystem::path& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) fail<IoError>("load_npy: cannot open '", path.string(), "'");
    const std::streamoff size = f.tellg();
    f.seekg(0);
    std::vector<char> b(static_cast<std::size_t>(size < 0 ? 0 : size));
    if (!b.empty() && !f.read(b.data(), std::streamsize(b.size()))) fail<IoError>("load_npy: cannot read '", path.string(), "'");
    const std::string where = "load_npy: '" + path.string() + "': ";
    require<FormatError>(b.size() >= 10 && std::memcmp(b.data(), "\x93NUMPY", 6) == 0, where, "not a .npy file");
    const int major = static_cast<unsigned char>(b[6]);
    std::size_t hlen = 0, off = 0;
    if (major == 1) {
        hlen = std::size_t(static_cast<unsigned char>(b[8])) | std::size_t(static_cast<unsigned char>(b[9])) << 8;
        off = 10;
    } else {
        require<FormatError>(major == 2 || major == 3, where, "unsupported version ", major);
        require<FormatError>(b.size() >= 12, where, "truncated header");
        for (int i = 0; i < 4; ++i) hlen |= std::size_t(static_cast<unsigned char>(b[8 + std::size_t(i)])) << (8 * i);
        off = 12;
    }
    require<FormatError>(hlen <= b.size() - off, where, "truncated header");
    const std::string h(b.data() + off, hlen);
    require<FormatError>(h.find("'descr': '<f4'") != std::string::npos, where, "dtype is not little-endian float32");
    require<FormatError>(h.find("'fortran_order': False") != std::string::npos, where, "Fortran order is not supported");
    const std::size_t s0 = h.find("'shape': (");
    require<FormatError>(s0 != std::string::npos, where, "no shape");
    const std::size_t s1 = h.find(')', s0);
    require<FormatError>(s1 != std::string::npos, where, "bad shape");
    std::vector<std::int64_t> dims;
    std::int64_t cur = -1;
    for (std::size_t i = s0 + 10; i < s1; ++i) {
        const char c = h[i];
        if (c >= '0' && c <= '9') {
            cur = (cur < 0 ? 0 : cur) * 10 + (c - '0');
            require<FormatError>(cur < (std::int64_t(1) << 40), where, "dimension too large");
        } else if (c == ',') {
            require<FormatError>(cur >= 0, where, "bad shape");
            dims.push_back(cur);
            cur = -1;
        } else {
            require<FormatError>(c == ' ', where, "bad shape");
        }
    }
    if (cur >= 0) dims.push_back(cur);
    require<FormatError>(dims.size() <= 6, where, "rank ", dims.size(), " is more than 6");
    std::size_t count = 1;
    for (std::int64_t d : dims) {
        require<FormatError>(d == 0 || count <= b.size() / std::size_t(d), where, "shape larger than the file");
        count *= std::size_t(d);
    }
    const Shape shape = Shape::from_range(dims.begin(), dims.end());
    const std::size_t data_off = off + hlen;
    const std::size_t need = count * 4;
    require<FormatError>(b.size() - data_off == need, where, "expected ", need, " data bytes, found ", b.size() - data_off);
    Tensor<float, Cpu> t(shape);
    if (need) std::memcpy(t.data(), b.data() + data_off, need);
    return t;
}

}  // namespace pickscore::io
