// pickscore/io/safetensors.hpp — safetensors reader (memory-mapped) and atomic writer; sharded sets.
//
// The format: an 8-byte little-endian header length N, N bytes of JSON, then the data section.
// The JSON object maps each tensor name to {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}
// (byte offsets into the data section) and may hold "__metadata__": {string: string}.
//
//   io::SafetensorsFile f = io::SafetensorsFile::open("model.safetensors");   // mmap + validate
//   for (const io::SafetensorsEntry& e : f.tensors()) ... e.name, e.dtype, e.shape
//   Tensor<float, Cpu> w = f.load<float>("logit_scale");        // F32/F16/BF16/F64 -> float
//   f.read<bf16>("text_projection.weight", view);               // into an existing view
//   io::SafetensorsSet s = io::SafetensorsSet::open(dir);       // a file, a *.index.json or a folder
//   io::save_safetensors("out.safetensors", {io::tensor_to_write("x", t)}, {{"format", "pt"}});
//
// Validation happens when a file is opened, before any tensor byte is read; every error is a
// pickscore::FormatError naming the file (and the tensor where there is one):
//   - the file holds at least the 8-byte length; N fits in the file and is at most 100,000,000
//     (the limit of the reference implementation); the header starts with '{' and is strict JSON
//     (io/json.hpp), an object; trailing spaces (the format's padding) are allowed;
//   - names are unique (the JSON is parsed allowing duplicate keys so that the error can name the
//     tensor); "__metadata__" is an object of strings;
//   - each entry has a known dtype string, a shape of at most 6 non-negative dimensions and
//     data_offsets [begin, end] with begin <= end <= the data section's size and
//     end - begin == numel * dtype size (no overflow);
//   - strict layout, as the reference implementation (the Rust `safetensors` crate) demands: the
//     tensors, sorted by offset, tile the data section exactly — the first starts at 0, each
//     starts where the previous ends (an overlap and a gap are both errors, naming both tensors)
//     and the last ends at the end of the file. Files written by Hugging Face and by
//     save_safetensors below always satisfy this.
// Element types: F32, F16, BF16 and F64 read into any of float, double, bf16, f16 (rounding to
// nearest even); I32 and I64 read into int32_t (I64 range-checked; older Hugging Face files
// carry int64 `position_ids` buffers). Every other dtype the format knows (BOOL, U8, I8, I16,
// U16, U32, U64, F8_E4M3, F8_E5M2) opens fine — the header is validated with its element size —
// but reading such a tensor is a FormatError naming it and its dtype. Little-endian hosts only.
//
// Writing: save_safetensors writes tensors of f32, f64, bf16, f16 and int32 to a temporary file
// in the destination's folder, fsyncs it, renames it over the destination and fsyncs the folder,
// so a crash or an error leaves either the old file or the new one, never a partial file (the
// temporary is removed on every error path). The header is padded with spaces so that the data
// section starts at a multiple of 8 bytes, and tensors are laid out largest element size first
// (stable otherwise), so every tensor is aligned to its element size in the file.
// save_safetensors_sharded splits a list into shards of at most a given size and writes
// "<stem>-0000i-of-0000n.safetensors" plus "<stem>.safetensors.index.json" (Hugging Face layout:
// {"metadata": {"total_size": bytes}, "weight_map": {name: shard}}), the index last.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define PICKSCORE_SAFETENSORS_POSIX 1
#else
#define PICKSCORE_SAFETENSORS_POSIX 0
#endif

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "json.hpp"

namespace pickscore::io {

// Largest header the reader accepts (the Rust reference implementation's limit).
inline constexpr std::uint64_t kSafetensorsMaxHeader = 100'000'000;

// The safetensors name of a pickscore element type ("F32", "F64", "BF16", "F16", "I32").
constexpr std::string_view safetensors_dtype_name(DType t) {
    switch (t) {
        case DType::f32: return "F32";
        case DType::f64: return "F64";
        case DType::bf16: return "BF16";
        case DType::f16: return "F16";
        case DType::i32: return "I32";
    }
    return "?";
}

namespace detail {

// Element size in bytes of a safetensors dtype string, 0 when the format has no such dtype.
inline std::size_t safetensors_element_size(std::string_view s) {
    struct Known {
        std::string_view name;
        std::size_t size;
    };
    static constexpr Known known[] = {{"BOOL", 1}, {"U8", 1},   {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1},
                                      {"I16", 2},  {"U16", 2},  {"F16", 2},  {"BF16", 2},    {"I32", 4},
                                      {"U32", 4},  {"F32", 4},  {"F64", 8},  {"I64", 8},     {"U64", 8}};
    for (const Known& k : known)
        if (k.name == s) return k.size;
    return 0;
}

inline bool host_is_little_endian() {
    const std::uint16_t probe = 1;
    unsigned char first = 0;
    std::memcpy(&first, &probe, 1);
    return first == 1;
}

// The bytes of a file: memory-mapped read-only where the platform has mmap, else read into memory;
// or a copy of a caller's buffer (from_memory). Move-only.
class FileBytes {
public:
    FileBytes() = default;
    static FileBytes map(const std::filesystem::path& path) {
        FileBytes fb;
#if PICKSCORE_SAFETENSORS_POSIX
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) fail<IoError>("safetensors: cannot open '", path.string(), "': ", std::strerror(errno));
        struct stat st {};
        if (::fstat(fd, &st) != 0) {
            const int e = errno;
            ::close(fd);
            fail<IoError>("safetensors: cannot stat '", path.string(), "': ", std::strerror(e));
        }
        if (!S_ISREG(st.st_mode)) {
            ::close(fd);
            fail<IoError>("safetensors: '", path.string(), "' is not a regular file");
        }
        fb.size_ = std::size_t(st.st_size);
        if (fb.size_ > 0) {
            void* p = ::mmap(nullptr, fb.size_, PROT_READ, MAP_PRIVATE, fd, 0);
            if (p == MAP_FAILED) {
                const int e = errno;
                ::close(fd);
                fail<IoError>("safetensors: cannot map '", path.string(), "': ", std::strerror(e));
            }
            fb.map_ = p;
            fb.data_ = static_cast<const std::byte*>(p);
        }
        ::close(fd);  // the mapping stays valid
#else
        std::ifstream f(path, std::ios::binary | std::ios::ate);
        if (!f) fail<IoError>("safetensors: cannot open '", path.string(), "'");
        const std::streamoff n = f.tellg();
        f.seekg(0);
        fb.owned_.resize(std::size_t(n < 0 ? 0 : n));
        if (!fb.owned_.empty() && !f.read(reinterpret_cast<char*>(fb.owned_.data()), std::streamsize(fb.owned_.size())))
            fail<IoError>("safetensors: cannot read '", path.string(), "'");
        fb.data_ = fb.owned_.data();
        fb.size_ = fb.owned_.size();
#endif
        return fb;
    }
    static FileBytes copy_of(std::span<const std::byte> bytes) {
        FileBytes fb;
        fb.owned_.assign(bytes.begin(), bytes.end());
        fb.data_ = fb.owned_.data();
        fb.size_ = fb.owned_.size();
        return fb;
    }
    FileBytes(FileBytes&& o) noexcept
        : owned_(std::move(o.owned_)), map_(std::exchange(o.map_, nullptr)), data_(std::exchange(o.data_, nullptr)),
          size_(std::exchange(o.size_, 0)) {
        if (!owned_.empty()) data_ = owned_.data();
    }
    FileBytes& operator=(FileBytes&& o) noexcept {
        if (this != &o) {
            release();
            owned_ = std::move(o.owned_);
            map_ = std::exchange(o.map_, nullptr);
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
            if (!owned_.empty()) data_ = owned_.data();
        }
        return *this;
    }
    FileBytes(const FileBytes&) = delete;
    FileBytes& operator=(const FileBytes&) = delete;
    ~FileBytes() { release(); }

    std::span<const std::byte> bytes() const { return {data_, size_}; }

private:
    void release() {
#if PICKSCORE_SAFETENSORS_POSIX
        if (map_) ::munmap(map_, size_);
#endif
        map_ = nullptr;
    }
    std::vector<std::byte> owned_;
    void* map_ = nullptr;
    const std::byte* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace detail

// One tensor's record in a safetensors header.
struct SafetensorsEntry {
    std::string name;
    std::string dtype;              // as written: "F32", "BF16", "I64", ...
    Shape shape;                    // rank 0 (a scalar) to 6
    std::uint64_t begin = 0;        // [begin, end): byte offsets in the data section
    std::uint64_t end = 0;
    std::size_t element_size = 0;   // bytes per element of `dtype`

    std::int64_t numel() const { return shape.numel(); }
    std::uint64_t bytes() const { return end - begin; }
    // The pickscore element type stored, if the reader converts it (F32/F64/BF16/F16/I32).
    std::optional<DType> pick_dtype() const {
        if (dtype == "F32") return DType::f32;
        if (dtype == "F64") return DType::f64;
        if (dtype == "BF16") return DType::bf16;
        if (dtype == "F16") return DType::f16;
        if (dtype == "I32") return DType::i32;
        return std::nullopt;
    }
};

// The parsed, validated header of one file.
struct SafetensorsHeader {
    std::vector<SafetensorsEntry> tensors;        // in header order
    std::map<std::string, std::string> metadata;  // "__metadata__"
    std::uint64_t data_offset = 0;                // 8 + N: where the data section starts in the file
};

// Parses and validates the header of a safetensors file given as bytes (the whole file). `label`
// names the file in errors. Throws FormatError; reads nothing outside `file`.
inline SafetensorsHeader parse_safetensors_header(std::span<const std::byte> file, const std::string& label) {
    const std::string where = "safetensors: '" + label + "': ";
    require<FormatError>(file.size() >= 8, where, "file of ", file.size(),
                         " bytes is too small to hold the 8-byte header length");
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | std::uint64_t(std::to_integer<unsigned char>(file[std::size_t(i)]));
    const std::uint64_t room = file.size() - 8;
    require<FormatError>(n <= room, where, "header length ", n, " exceeds the file (", room,
                         " bytes after the length field)");
    require<FormatError>(n <= kSafetensorsMaxHeader, where, "header length ", n, " exceeds the limit of ",
                         kSafetensorsMaxHeader, " bytes");
    require<FormatError>(n >= 2, where, "header of ", n, " bytes is too short to be a JSON object");
    const std::string_view text(reinterpret_cast<const char*>(file.data()) + 8, std::size_t(n));
    require<FormatError>(text.front() == '{', where, "header does not start with '{'");
    Json header;
    try {
        header = json::parse(text, {.max_depth = 8, .allow_duplicate_keys = true});
    } catch (const FormatError& e) {
        fail<FormatError>(where, "bad header JSON: ", e.what());
    }
    require<FormatError>(header.is_object(), where, "header is not a JSON object");

    SafetensorsHeader h;
    h.data_offset = 8 + n;
    const std::uint64_t data_size = file.size() - h.data_offset;
    std::unordered_set<std::string_view> seen;
    seen.reserve(header.items().size());
    bool seen_metadata = false;
    for (const auto& [name, value] : header.items()) {
        if (name == "__metadata__") {
            require<FormatError>(!seen_metadata, where, "duplicate \"__metadata__\"");
            seen_metadata = true;
            require<FormatError>(value.is_object(), where, "\"__metadata__\" is ", Json::type_name(value.type()),
                                 ", expected an object of strings");
            for (const auto& [k, v] : value.items()) {
                require<FormatError>(v.is_string(), where, "\"__metadata__\" value of \"", k, "\" is ",
                                     Json::type_name(v.type()), ", expected a string");
                require<FormatError>(h.metadata.count(k) == 0, where, "duplicate \"__metadata__\" key \"", k, "\"");
                h.metadata.emplace(k, v.as_string());
            }
            continue;
        }
        const std::string wt = where + "tensor '" + name + "': ";
        require<FormatError>(seen.insert(name).second, where, "duplicate tensor name '", name, "'");
        require<FormatError>(value.is_object(), wt, "entry is ", Json::type_name(value.type()), ", expected an object");
        SafetensorsEntry e;
        e.name = name;
        const Json* dt = value.find("dtype");
        const Json* sh = value.find("shape");
        const Json* off = value.find("data_offsets");
        require<FormatError>(dt && dt->is_string(), wt, "missing or non-string \"dtype\"");
        require<FormatError>(sh && sh->is_array(), wt, "missing or non-array \"shape\"");
        require<FormatError>(off && off->is_array(), wt, "missing or non-array \"data_offsets\"");
        e.dtype = dt->as_string();
        e.element_size = detail::safetensors_element_size(e.dtype);
        require<FormatError>(e.element_size != 0, wt, "unsupported dtype '", e.dtype,
                             "' (the format's dtypes: BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 F16 BF16 I32 U32 F32 F64 "
                             "I64 U64)");
        const Json::Array& dims = sh->as_array();
        require<FormatError>(dims.size() <= std::size_t(Shape::kMaxRank), wt, "rank ", dims.size(),
                             " exceeds the maximum of ", Shape::kMaxRank);
        // The product of the non-zero dimensions times the element size must fit in int64 (so that
        // Shape::numel cannot overflow); the byte count is checked against the offsets below.
        std::uint64_t product = 1;
        bool zero = false;
        const auto limit = std::uint64_t(std::numeric_limits<std::int64_t>::max()) / e.element_size;
        for (const Json& d : dims) {
            require<FormatError>(d.is_integer() && d.as_int64() >= 0, wt, "shape entries must be non-negative integers");
            const auto dim = std::uint64_t(d.as_int64());
            e.shape.push_back(std::int64_t(dim));
            if (dim == 0) {
                zero = true;
                continue;
            }
            require<FormatError>(product <= limit / dim, wt, "shape ", e.shape.str(), "... is too large");
            product *= dim;
        }
        const std::uint64_t bytes = zero ? 0 : product * e.element_size;
        const Json::Array& o = off->as_array();
        require<FormatError>(o.size() == 2 && o[0].is_integer() && o[1].is_integer() && o[0].as_int64() >= 0 &&
                                 o[1].as_int64() >= 0,
                             wt, "\"data_offsets\" must be two non-negative integers");
        e.begin = std::uint64_t(o[0].as_int64());
        e.end = std::uint64_t(o[1].as_int64());
        require<FormatError>(e.begin <= e.end, wt, "data_offsets [", e.begin, ", ", e.end, "] run backwards");
        require<FormatError>(e.end <= data_size, wt, "data_offsets [", e.begin, ", ", e.end,
                             "] run past the end of the data section (", data_size, " bytes)");
        require<FormatError>(e.end - e.begin == bytes, wt, "data_offsets [", e.begin, ", ", e.end, "] hold ",
                             e.end - e.begin, " bytes but ", e.dtype, " ", e.shape.str(), " needs ", bytes);
        h.tensors.push_back(std::move(e));
    }

    // Layout: sorted by offset, the tensors tile [0, data_size) exactly.
    std::vector<const SafetensorsEntry*> order;
    order.reserve(h.tensors.size());
    for (const SafetensorsEntry& e : h.tensors) order.push_back(&e);
    std::sort(order.begin(), order.end(), [](const SafetensorsEntry* a, const SafetensorsEntry* b) {
        return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    std::uint64_t cursor = 0;
    const SafetensorsEntry* prev = nullptr;
    for (const SafetensorsEntry* e : order) {
        if (e->begin < cursor)
            fail<FormatError>(where, "tensor '", e->name, "' [", e->begin, ", ", e->end, ") overlaps tensor '",
                              prev->name, "' [", prev->begin, ", ", prev->end, ")");
        if (e->begin > cursor)
            fail<FormatError>(where, "gap of ", e->begin - cursor, " bytes before tensor '", e->name, "' [", e->begin,
                              ", ", e->end, ")", prev ? " after tensor '" + prev->name + "'" : std::string(),
                              " (tensors must be contiguous)");
        cursor = e->end;
        if (e->end > e->begin || !prev) prev = e;
    }
    require<FormatError>(cursor == data_size, where, data_size - cursor, " trailing bytes after the last tensor",
                         prev ? " '" + prev->name + "'" : std::string(), " (the data section holds ", data_size,
                         " bytes)");
    return h;
}

namespace detail {

template <class>
inline constexpr bool dependent_false_st = false;

template <class T>
constexpr bool st_is_float = std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, bf16> ||
                             std::is_same_v<T, f16>;

template <class S>
inline S st_load(const std::byte* p) {
    S s;
    std::memcpy(&s, p, sizeof(S));
    return s;
}

// dst[i] = convert(src element i) for a validated entry's bytes.
template <class T>
void st_convert(const SafetensorsEntry& e, const std::byte* src, TensorView<T, Cpu> dst, const std::string& where) {
    const std::int64_t n = e.numel();
    auto loop = [&](auto load) {
        for (std::int64_t i = 0; i < n; ++i) dst[i] = load(src + std::size_t(i) * e.element_size);
    };
    const std::string& s = e.dtype;
    if constexpr (st_is_float<T>) {
        if (e.pick_dtype() == dtype_of<T>) {
            if (n) std::memcpy(static_cast<void*>(dst.data()), src, std::size_t(e.bytes()));
        } else if (s == "F32") {
            loop([](const std::byte* p) { return cast<T>(st_load<float>(p)); });
        } else if (s == "F64") {
            loop([](const std::byte* p) { return cast<T>(st_load<double>(p)); });
        } else if (s == "BF16") {
            loop([](const std::byte* p) { return cast<T>(bf16::from_bits(st_load<std::uint16_t>(p))); });
        } else if (s == "F16") {
            loop([](const std::byte* p) { return cast<T>(f16::from_bits(st_load<std::uint16_t>(p))); });
        } else {
            fail<FormatError>(where, "unsupported dtype ", s, " for a ", dtype_name(dtype_of<T>),
                              " tensor (readable as floating point: F32, F16, BF16, F64)");
        }
    } else if constexpr (std::is_same_v<T, std::int32_t>) {
        if (s == "I32") {
            if (n) std::memcpy(static_cast<void*>(dst.data()), src, std::size_t(e.bytes()));
        } else if (s == "I64") {
            for (std::int64_t i = 0; i < n; ++i) {
                const auto v = st_load<std::int64_t>(src + std::size_t(i) * 8);
                require<FormatError>(v >= std::numeric_limits<std::int32_t>::min() &&
                                         v <= std::numeric_limits<std::int32_t>::max(),
                                     where, "I64 value ", v, " at index ", i, " does not fit in int32");
                dst[i] = std::int32_t(v);
            }
        } else {
            fail<FormatError>(where, "unsupported dtype ", s, " for an i32 tensor (readable as integers: I32, I64)");
        }
    } else {
        static_assert(dependent_false_st<T>, "safetensors: read into float, double, bf16, f16 or int32_t");
    }
}

}  // namespace detail

// One safetensors file, memory-mapped and validated. Move-only; entries stay valid while it lives.
class SafetensorsFile {
public:
    SafetensorsFile() = default;

    static SafetensorsFile open(const std::filesystem::path& path) {
        require<Error>(detail::host_is_little_endian(), "safetensors: only little-endian hosts are supported");
        SafetensorsFile f;
        f.label_ = path.string();
        f.path_ = path;
        f.bytes_ = std::make_unique<detail::FileBytes>(detail::FileBytes::map(path));
        f.init();
        return f;
    }
    // Parses a copy of an in-memory file (tests, fuzzing); `label` names it in errors.
    static SafetensorsFile from_memory(std::span<const std::byte> bytes, std::string label = "<memory>") {
        require<Error>(detail::host_is_little_endian(), "safetensors: only little-endian hosts are supported");
        SafetensorsFile f;
        f.label_ = std::move(label);
        f.bytes_ = std::make_unique<detail::FileBytes>(detail::FileBytes::copy_of(bytes));
        f.init();
        return f;
    }

    const std::filesystem::path& path() const { return path_; }
    const std::string& label() const { return label_; }
    const std::vector<SafetensorsEntry>& tensors() const { return header_.tensors; }
    const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
    std::size_t size() const { return header_.tensors.size(); }

    const SafetensorsEntry* find(std::string_view name) const {
        const auto it = index_.find(std::string(name));
        return it == index_.end() ? nullptr : &header_.tensors[it->second];
    }
    const SafetensorsEntry& at(std::string_view name) const {
        const SafetensorsEntry* e = find(name);
        if (!e) fail<FormatError>("safetensors: '", label_, "': no tensor '", name, "'");
        return *e;
    }
    // The raw bytes of a tensor (inside the mapping; not necessarily aligned for its dtype).
    std::span<const std::byte> bytes(const SafetensorsEntry& e) const {
        return bytes_->bytes().subspan(std::size_t(header_.data_offset + e.begin), std::size_t(e.bytes()));
    }

    // Reads tensor `name` into dst (same number of elements; the shape may differ), converting
    // the element type (see the top of the file).
    template <class T>
    void read(const SafetensorsEntry& e, TensorView<T, Cpu> dst) const {
        const std::string where = "safetensors: '" + label_ + "': tensor '" + e.name + "': ";
        require<ShapeError>(dst.numel() == e.numel(), where, "has ", e.numel(), " elements (shape ", e.shape,
                            ") but the destination has ", dst.numel(), " (shape ", dst.shape(), ")");
        detail::st_convert<T>(e, bytes(e).data(), dst, where);
    }
    template <class T>
    void read(std::string_view name, TensorView<T, Cpu> dst) const {
        read<T>(at(name), dst);
    }
    template <class T>
    Tensor<T, Cpu> load(std::string_view name) const {
        const SafetensorsEntry& e = at(name);
        Tensor<T, Cpu> t(e.shape);
        read<T>(e, t);
        return t;
    }

private:
    void init() {
        header_ = parse_safetensors_header(bytes_->bytes(), label_);
        index_.reserve(header_.tensors.size());
        for (std::size_t i = 0; i < header_.tensors.size(); ++i) index_.emplace(header_.tensors[i].name, i);
    }

    std::string label_;
    std::filesystem::path path_;
    std::unique_ptr<detail::FileBytes> bytes_;
    SafetensorsHeader header_;
    std::unordered_map<std::string, std::size_t> index_;
};

// A checkpoint in one file or in shards listed by a Hugging Face "*.safetensors.index.json".
// open(path): a .safetensors file; an index file; or a folder holding model.safetensors.index.json,
// model.safetensors or open_clip_model.safetensors (the first found, in that order). The index is validated: "weight_map" is an object of
// shard file names (plain names in the index's folder: no path separators, not "." or ".."),
// every listed tensor is in its shard, and every tensor of every shard is listed (by that shard).
class SafetensorsSet {
public:
    static SafetensorsSet open(const std::filesystem::path& path) {
        namespace fs = std::filesystem;
        SafetensorsSet s;
        fs::path p = path;
        if (fs::is_directory(p)) {
            if (fs::exists(p / "model.safetensors.index.json")) {
                p /= "model.safetensors.index.json";
            } else if (fs::exists(p / "model.safetensors")) {
                p /= "model.safetensors";
            } else if (fs::exists(p / "open_clip_model.safetensors")) {
                p /= "open_clip_model.safetensors";
            } else {
                fail<IoError>("safetensors: folder '", path.string(),
                              "' holds none of model.safetensors.index.json, model.safetensors, "
                              "open_clip_model.safetensors");
            }
        }
        s.dir_ = p.parent_path();
        const std::string fname = p.filename().string();
        const std::string_view suffix = ".index.json";
        if (fname.size() > suffix.size() && fname.compare(fname.size() - suffix.size(), suffix.size(), suffix) == 0) {
            s.open_index(p);
        } else {
            s.files_.push_back(SafetensorsFile::open(p));
            for (const SafetensorsEntry& e : s.files_[0].tensors()) s.where_.emplace(e.name, 0);
            s.names_.reserve(s.files_[0].size());
            for (const SafetensorsEntry& e : s.files_[0].tensors()) s.names_.push_back(e.name);
            s.metadata_ = s.files_[0].metadata();
        }
        return s;
    }

    // Folder of the file or index (where config.json would be).
    const std::filesystem::path& dir() const { return dir_; }
    // Tensor names: header order for one file; the index's order for a sharded set.
    const std::vector<std::string>& names() const { return names_; }
    const std::vector<SafetensorsFile>& files() const { return files_; }
    // The single file's "__metadata__", or the index's "metadata" values that are strings.
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    bool contains(std::string_view name) const { return where_.count(std::string(name)) != 0; }
    const SafetensorsEntry* find(std::string_view name) const {
        const auto it = where_.find(std::string(name));
        return it == where_.end() ? nullptr : files_[it->second].find(name);
    }
    const SafetensorsEntry& at(std::string_view name) const {
        const SafetensorsEntry* e = find(name);
        if (!e) fail<FormatError>("safetensors: '", (dir_ / "").string(), "': no tensor '", name, "'");
        return *e;
    }
    const SafetensorsFile& file_of(std::string_view name) const {
        const auto it = where_.find(std::string(name));
        if (it == where_.end()) fail<FormatError>("safetensors: '", (dir_ / "").string(), "': no tensor '", name, "'");
        return files_[it->second];
    }
    template <class T>
    void read(std::string_view name, TensorView<T, Cpu> dst) const {
        file_of(name).template read<T>(name, dst);
    }
    template <class T>
    Tensor<T, Cpu> load(std::string_view name) const {
        return file_of(name).template load<T>(name);
    }

private:
    void open_index(const std::filesystem::path& index_path) {
        const std::string where = "safetensors index: '" + index_path.string() + "': ";
        std::ifstream in(index_path, std::ios::binary);
        if (!in) fail<IoError>("safetensors index: cannot open '", index_path.string(), "'");
        const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        Json j;
        try {
            j = json::parse(text, {.max_depth = 16, .allow_duplicate_keys = true});
        } catch (const FormatError& e) {
            fail<FormatError>(where, "bad JSON: ", e.what());
        }
        require<FormatError>(j.is_object(), where, "not a JSON object");
        if (const Json* md = j.find("metadata")) {
            require<FormatError>(md->is_object(), where, "\"metadata\" is not an object");
            for (const auto& [k, v] : md->items())
                if (v.is_string()) metadata_[k] = v.as_string();
                else if (v.is_integer()) metadata_[k] = std::to_string(v.as_int64());
        }
        const Json* wm = j.find("weight_map");
        require<FormatError>(wm && wm->is_object(), where, "missing \"weight_map\" object");
        std::map<std::string, std::size_t> shard_index;
        std::vector<std::vector<std::string>> listed;
        for (const auto& [name, file] : wm->items()) {
            require<FormatError>(file.is_string(), where, "weight_map entry '", name, "' is not a string");
            const std::string& f = file.as_string();
            require<FormatError>(!f.empty() && f != "." && f != ".." && f.find('/') == std::string::npos &&
                                     f.find('\\') == std::string::npos,
                                 where, "weight_map entry '", name, "': shard '", f,
                                 "' must be a plain file name in the index's folder");
            require<FormatError>(where_.count(name) == 0, where, "duplicate weight_map entry '", name, "'");
            auto [it, added] = shard_index.emplace(f, files_.size());
            if (added) {
                files_.push_back(SafetensorsFile::open(dir_ / f));
                listed.emplace_back();
            }
            where_.emplace(name, it->second);
            names_.push_back(name);
            listed[it->second].push_back(name);
        }
        std::string problems;
        for (std::size_t i = 0; i < files_.size(); ++i) {
            std::unordered_set<std::string_view> mine(listed[i].begin(), listed[i].end());
            for (const std::string& n : listed[i])
                if (!files_[i].find(n)) problems += "\n  tensor '" + n + "' is not in shard '" + files_[i].label() + "'";
            for (const SafetensorsEntry& e : files_[i].tensors())
                if (!mine.count(e.name))
                    problems += "\n  tensor '" + e.name + "' of shard '" + files_[i].label() +
                                "' is not listed for it in the weight_map";
        }
        require<FormatError>(problems.empty(), where, "index and shards disagree:", problems);
    }

    std::filesystem::path dir_;
    std::vector<SafetensorsFile> files_;
    std::unordered_map<std::string, std::size_t> where_;
    std::vector<std::string> names_;
    std::map<std::string, std::string> metadata_;
};

// ---- writing ------------------------------------------------------------------------------------

// A tensor to write: name, element type, shape and the bytes (host memory, row-major).
struct TensorToWrite {
    std::string name;
    DType dtype = DType::f32;
    Shape shape;
    const void* data = nullptr;

    std::uint64_t bytes() const { return std::uint64_t(shape.numel()) * dtype_size(dtype); }
};

template <class T>
TensorToWrite tensor_to_write(std::string name, const TensorView<T, Cpu>& t) {
    return TensorToWrite{std::move(name), dtype_of<T>, t.shape(), t.data()};
}
// With an explicit shape (e.g. a [1] parameter written as a scalar []); same number of elements.
template <class T>
TensorToWrite tensor_to_write(std::string name, const TensorView<T, Cpu>& t, Shape shape) {
    require<ShapeError>(shape.numel() == t.numel(), "tensor_to_write: '", name, "' has shape ", t.shape(),
                        ", cannot write it as ", shape);
    return TensorToWrite{std::move(name), dtype_of<T>, shape, t.data()};
}

namespace detail {

// A file written to a temporary beside its destination and renamed into place on commit();
// removed if destroyed uncommitted. Errors are IoError naming the destination.
class AtomicFile {
public:
    explicit AtomicFile(std::filesystem::path dest) : dest_(std::move(dest)) {
        namespace fs = std::filesystem;
        const fs::path dir = dest_.has_parent_path() ? dest_.parent_path() : fs::path(".");
#if PICKSCORE_SAFETENSORS_POSIX
        // A fresh name (pid, a process-wide counter, the address of this object); created with
        // O_EXCL and mode 0666 so that the umask applies as for any new file (mkstemp would
        // leave it 0600).
        static std::atomic<unsigned long> counter{0};
        for (int attempt = 0;; ++attempt) {
            // (Built by appending: GCC 12 at -O3 warns falsely (-Wrestrict) on "." + std::string.)
            std::string name(1, '.');
            name += dest_.filename().string();
            name += ".tmp-";
            name += std::to_string(::getpid());
            name += '-';
            name += std::to_string(counter.fetch_add(1));
            name += '-';
            name += std::to_string(reinterpret_cast<std::uintptr_t>(this) % 100000);
            const fs::path candidate = dir / name;
            fd_ = ::open(candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            if (fd_ >= 0) {
                tmp_ = candidate;
                break;
            }
            if (errno != EEXIST || attempt > 100)
                fail<IoError>("cannot create a temporary file for '", dest_.string(), "': ", std::strerror(errno));
        }
#else
        std::string name(1, '.');
        name += dest_.filename().string();
        name += ".tmp";
        tmp_ = dir / name;
        out_.open(tmp_, std::ios::binary | std::ios::trunc);
        if (!out_) fail<IoError>("cannot create '", tmp_.string(), "'");
#endif
    }
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;
    ~AtomicFile() { abandon(); }

    void write(const void* data, std::size_t n) {
#if PICKSCORE_SAFETENSORS_POSIX
        const char* p = static_cast<const char*>(data);
        while (n > 0) {
            const std::size_t chunk = std::min<std::size_t>(n, std::size_t(1) << 30);
            const ssize_t w = ::write(fd_, p, chunk);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) fail<IoError>("writing '", dest_.string(), "' failed: ", w < 0 ? std::strerror(errno) : "no progress");
            p += w;
            n -= std::size_t(w);
        }
#else
        out_.write(static_cast<const char*>(data), std::streamsize(n));
        if (!out_) fail<IoError>("writing '", dest_.string(), "' failed");
#endif
    }
    void commit() {
        namespace fs = std::filesystem;
#if PICKSCORE_SAFETENSORS_POSIX
        if (::fsync(fd_) != 0) fail<IoError>("fsync of '", dest_.string(), "' failed: ", std::strerror(errno));
        const int fd = std::exchange(fd_, -1);
        if (::close(fd) != 0) fail<IoError>("closing '", dest_.string(), "' failed: ", std::strerror(errno));
        if (::rename(tmp_.c_str(), dest_.c_str()) != 0)
            fail<IoError>("cannot rename '", tmp_.string(), "' to '", dest_.string(), "': ", std::strerror(errno));
        tmp_.clear();
        // Make the rename durable.
        const fs::path dir = dest_.has_parent_path() ? dest_.parent_path() : fs::path(".");
        const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)::fsync(dfd);
            ::close(dfd);
        }
#else
        out_.close();
        if (!out_) fail<IoError>("closing '", dest_.string(), "' failed");
        std::error_code ec;
        fs::rename(tmp_, dest_, ec);
        if (ec) fail<IoError>("cannot rename '", tmp_.string(), "' to '", dest_.string(), "': ", ec.message());
        tmp_.clear();
#endif
    }

private:
    void abandon() noexcept {
#if PICKSCORE_SAFETENSORS_POSIX
        if (fd_ >= 0) ::close(std::exchange(fd_, -1));
        if (!tmp_.empty()) ::unlink(tmp_.c_str());
#else
        if (out_.is_open()) out_.close();
        std::error_code ec;
        if (!tmp_.empty()) std::filesystem::remove(tmp_, ec);
#endif
        tmp_.clear();
    }

    std::filesystem::path dest_;
    std::filesystem::path tmp_;
#if PICKSCORE_SAFETENSORS_POSIX
    int fd_ = -1;
#else
    std::ofstream out_;
#endif
};

// Checks names and layout and returns the header bytes (with the length prefix, padded so the data
// starts at a multiple of 8) and the tensors in file order.
inline std::pair<std::string, std::vector<const TensorToWrite*>> safetensors_plan(
    const std::vector<TensorToWrite>& tensors, const std::map<std::string, std::string>& metadata) {
    std::unordered_set<std::string_view> names;
    for (const TensorToWrite& t : tensors) {
        require<Error>(!t.name.empty() && t.name != "__metadata__", "save_safetensors: invalid tensor name '", t.name, "'");
        require<Error>(names.insert(t.name).second, "save_safetensors: duplicate tensor name '", t.name, "'");
        require<Error>(t.data != nullptr || t.shape.numel() == 0, "save_safetensors: tensor '", t.name,
                       "' has no data");
    }
    std::vector<const TensorToWrite*> order;
    for (const TensorToWrite& t : tensors) order.push_back(&t);
    std::stable_sort(order.begin(), order.end(), [](const TensorToWrite* a, const TensorToWrite* b) {
        return dtype_size(a->dtype) > dtype_size(b->dtype);
    });
    Json h = Json::Object{};
    if (!metadata.empty()) {
        Json md = Json::Object{};
        for (const auto& [k, v] : metadata) md.set(k, Json(v));
        h.set("__metadata__", std::move(md));
    }
    std::uint64_t offset = 0;
    for (const TensorToWrite* t : order) {
        Json e = Json::Object{};
        e.set("dtype", Json(std::string(safetensors_dtype_name(t->dtype))));
        Json shape = Json::Array{};
        for (std::int64_t d : t->shape) shape.push_back(Json(d));
        e.set("shape", std::move(shape));
        Json off = Json::Array{};
        off.push_back(Json(std::int64_t(offset)));
        offset += t->bytes();
        off.push_back(Json(std::int64_t(offset)));
        e.set("data_offsets", std::move(off));
        h.set(t->name, std::move(e));
    }
    std::string text = json::dump(h);
    text.append((8 - text.size() % 8) % 8, ' ');
    std::string out(8, '\0');
    std::uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) out[std::size_t(i)] = char((n >> (8 * i)) & 0xff);
    out += text;
    return {std::move(out), std::move(order)};
}

}  // namespace detail

// The bytes of a safetensors file (tests, fuzz seeds, small files).
inline std::vector<std::byte> safetensors_bytes(const std::vector<TensorToWrite>& tensors,
                                                const std::map<std::string, std::string>& metadata = {}) {
    auto [header, order] = detail::safetensors_plan(tensors, metadata);
    std::vector<std::byte> out(reinterpret_cast<const std::byte*>(header.data()),
                               reinterpret_cast<const std::byte*>(header.data()) + header.size());
    for (const TensorToWrite* t : order) {
        const auto* p = static_cast<const std::byte*>(t->data);
        out.insert(out.end(), p, p + t->bytes());
    }
    return out;
}

// Writes a safetensors file atomically (temporary file, fsync, rename). Throws Error for bad names
// (before anything is written) and IoError when the file system fails (the temporary is removed
// and an existing file at `path` is left as it was).
inline void save_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
    require<Error>(detail::host_is_little_endian(), "save_safetensors: only little-endian hosts are supported");
    auto [header, order] = detail::safetensors_plan(tensors, metadata);
    detail::AtomicFile f(path);
    f.write(header.data(), header.size());
    for (const TensorToWrite* t : order)
        if (t->bytes()) f.write(t->data, std::size_t(t->bytes()));
    f.commit();
}

// Writes `tensors` as shards of at most max_shard_bytes of tensor data each (a larger tensor gets a
// shard of its own) plus "<stem>.safetensors.index.json", in folder `dir` (which must exist). With a
// single shard the files are still named "-00001-of-00001". Returns the index path.
inline std::filesystem::path save_safetensors_sharded(const std::filesystem::path& dir,
                                                      const std::vector<TensorToWrite>& tensors,
                                                      std::uint64_t max_shard_bytes,
                                                      const std::map<std::string, std::string>& metadata = {},
                                                      const std::string& stem = "model") {
    require<Error>(max_shard_bytes > 0, "save_safetensors_sharded: max_shard_bytes must be positive");
    (void)detail::safetensors_plan(tensors, {});  // name checks before writing anything
    std::vector<std::vector<TensorToWrite>> shards;
    std::uint64_t used = 0, total = 0;
    for (const TensorToWrite& t : tensors) {
        if (shards.empty() || (used > 0 && used + t.bytes() > max_shard_bytes)) {
            shards.emplace_back();
            used = 0;
        }
        shards.back().push_back(t);
        used += t.bytes();
        total += t.bytes();
    }
    if (shards.empty()) shards.emplace_back();
    const std::size_t n = shards.size();
    auto shard_name = [&](std::size_t i) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "-%05zu-of-%05zu.safetensors", i + 1, n);
        return stem + buf;
    };
    Json wm = Json::Object{};
    for (std::size_t i = 0; i < n; ++i) {
        save_safetensors(dir / shard_name(i), shards[i], metadata);
        for (const TensorToWrite& t : shards[i]) wm.set(t.name, Json(shard_name(i)));
    }
    Json md = Json::Object{};
    md.set("total_size", Json(std::int64_t(total)));
    Json index = Json::Object{};
    index.set("metadata", std::move(md));
    index.set("weight_map", std::move(wm));
    const std::string text = json::dump(index, 2) + "\n";
    const std::filesystem::path index_path = dir / (stem + ".safetensors.index.json");
    detail::AtomicFile f(index_path);
    f.write(text.data(), text.size());
    f.commit();
    return index_path;
}

// Writes a small text file atomically (config.json next to a checkpoint).
inline void save_text_atomic(const std::filesystem::path& path, std::string_view text) {
    detail::AtomicFile f(path);
    f.write(text.data(), text.size());
    f.commit();
}

}  // namespace pickscore::io
