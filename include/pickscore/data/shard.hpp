// pickscore/data/shard.hpp — pickscore's own shard format for preference data: a writer and a
// memory-mapped, validating reader.
// pickscore-requires: pickscore::io (zlib for CRC-32)
//
// A shard (".pshard") holds preference examples — a prompt, two encoded images (PNG / JPEG / WebP
// bytes, as Pick-a-Pic stores them), the two labels, num_example_per_prompt, ids, the split — so
// that training reads them with one mmap and no parsing. tools/convert_pickapic.py writes the same
// format from Pick-a-Pic's parquet files. Version 1, all integers little-endian:
//
//   header (64 bytes, at offset 0)
//     0  char[8] magic "PICKSHRD"          32 u64 file_size (the whole file)
//     8  u32 version = 1                    40 u32 index_entry_size = 64
//     12 u32 header_size = 64               44 u32 index_crc32 (CRC-32 of the index bytes)
//     16 u64 record_count                   48 u32 flags = 0, 52 u32 0, 56 u32 0
//     24 u64 index_offset                   60 u32 header_crc32 (CRC-32 of bytes 0..59)
//   record data, from offset 64: per record its caption (UTF-8), image 0, image 1 and meta (a JSON
//     object of string ids: image_0_uid, image_1_uid, model_0, model_1, best_image_uid, created_at;
//     may be empty), back to back
//   index (record_count entries of 64 bytes, at index_offset = file_size - 64 * record_count)
//     0  u64 data_offset                    32 u32 num_example_per_prompt
//     8  u32 caption_size                   36 u8  split (Split below), 37 u8 flags (1 has_label,
//     12 u32 image0_size                           2 are_different), 38 u16 0
//     16 u32 image1_size                    40 i64 ranking_id
//     20 u32 meta_size                      48 i64 user_id
//     24 f32 label_0, 28 f32 label_1        56 u32 data_crc32 (CRC-32 of the record's data), 60 u32 0
//
// CRC-32 is zlib's (= Python's zlib.crc32). Opening a shard checks the header (magic, version,
// sizes, its CRC, file size), the index CRC and every entry's byte range (inside the data region,
// no overflow); any failure is a FormatError naming the file. A record whose data CRC does not
// match (checked by record(i, verify = true)) is a CorruptRecord error naming the file and index:
// the loader skips and counts those. Writing goes to a temporary file beside the destination,
// which is fsynced and renamed into place (then the folder is fsynced) by finish().
#pragma once

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../core/error.hpp"

namespace pickscore::data {

// Pick-a-Pic's splits; `other` for data without one.
enum class Split : std::uint8_t { train = 0, validation = 1, test = 2, validation_unique = 3, test_unique = 4, other = 255 };

inline const char* split_name(Split s) {
    switch (s) {
        case Split::train: return "train";
        case Split::validation: return "validation";
        case Split::test: return "test";
        case Split::validation_unique: return "validation_unique";
        case Split::test_unique: return "test_unique";
        default: return "other";
    }
}

inline Split parse_split(std::string_view s) {
    for (Split x : {Split::train, Split::validation, Split::test, Split::validation_unique, Split::test_unique,
                    Split::other})
        if (s == split_name(x)) return x;
    fail<Error>("unknown split '", s, "' (train, validation, test, validation_unique, test_unique or other)");
}

inline bool known_split_code(std::uint8_t c) { return c <= 4 || c == 255; }

// A record whose bytes are damaged (CRC mismatch, undecodable image, ...): skippable.
class CorruptRecord : public FormatError {
public:
    using FormatError::FormatError;
};

// One preference example, owning its bytes (what writers take and in-memory sets hold).
struct Example {
    std::string caption;
    std::vector<std::uint8_t> image0, image1;  // encoded images (PNG, JPEG or WebP)
    float label0 = 0.5f, label1 = 0.5f;
    std::uint32_t num_example_per_prompt = 1;
    Split split = Split::other;
    bool has_label = true, are_different = true;
    std::int64_t ranking_id = -1, user_id = -1;
    std::string meta;  // a JSON object of string ids, or empty
};

// An index entry, decoded.
struct ShardEntry {
    std::uint64_t data_offset = 0;
    std::uint32_t caption_size = 0, image0_size = 0, image1_size = 0, meta_size = 0;
    float label0 = 0, label1 = 0;
    std::uint32_t num_example_per_prompt = 0;
    Split split = Split::other;
    bool has_label = false, are_different = false;
    std::int64_t ranking_id = -1, user_id = -1;
    std::uint32_t data_crc32 = 0;

    std::uint64_t data_size() const {
        return std::uint64_t(caption_size) + image0_size + image1_size + meta_size;
    }
};

// A record as views into the mapped shard (valid while the ShardFile lives).
struct ShardRecord {
    const ShardEntry* entry = nullptr;
    std::string_view caption;
    std::span<const std::uint8_t> image0, image1;
    std::string_view meta;
};

namespace shard_format {
inline constexpr char magic[8] = {'P', 'I', 'C', 'K', 'S', 'H', 'R', 'D'};
inline constexpr std::uint32_t version = 1;
inline constexpr std::uint32_t header_size = 64;
inline constexpr std::uint32_t entry_size = 64;
inline constexpr const char* extension = ".pshard";

inline std::uint32_t crc32(const void* p, std::size_t n, std::uint32_t crc = 0) {
    const auto* b = static_cast<const Bytef*>(p);
    uLong c = crc;
    while (n > 0) {  // zlib takes uInt lengths
        const uInt chunk = uInt(std::min<std::size_t>(n, std::size_t(1) << 30));
        c = ::crc32(c, b, chunk);
        b += chunk;
        n -= chunk;
    }
    return std::uint32_t(c);
}

template <class U>
void put(std::uint8_t* at, U v) {
    static_assert(std::is_trivially_copyable_v<U>);
    // Little-endian hosts only (checked by the reader and the writer).
    std::memcpy(at, &v, sizeof v);
}
template <class U>
U get(const std::uint8_t* at) {
    U v;
    std::memcpy(&v, at, sizeof v);
    return v;
}

inline bool little_endian() {
    const std::uint16_t probe = 1;
    unsigned char first = 0;
    std::memcpy(&first, &probe, 1);
    return first == 1;
}

inline std::array<std::uint8_t, entry_size> encode_entry(const ShardEntry& e) {
    std::array<std::uint8_t, entry_size> b{};
    put<std::uint64_t>(b.data() + 0, e.data_offset);
    put<std::uint32_t>(b.data() + 8, e.caption_size);
    put<std::uint32_t>(b.data() + 12, e.image0_size);
    put<std::uint32_t>(b.data() + 16, e.image1_size);
    put<std::uint32_t>(b.data() + 20, e.meta_size);
    put<float>(b.data() + 24, e.label0);
    put<float>(b.data() + 28, e.label1);
    put<std::uint32_t>(b.data() + 32, e.num_example_per_prompt);
    b[36] = std::uint8_t(e.split);
    b[37] = std::uint8_t((e.has_label ? 1 : 0) | (e.are_different ? 2 : 0));
    put<std::int64_t>(b.data() + 40, e.ranking_id);
    put<std::int64_t>(b.data() + 48, e.user_id);
    put<std::uint32_t>(b.data() + 56, e.data_crc32);
    return b;
}

inline ShardEntry decode_entry(const std::uint8_t* b) {
    ShardEntry e;
    e.data_offset = get<std::uint64_t>(b + 0);
    e.caption_size = get<std::uint32_t>(b + 8);
    e.image0_size = get<std::uint32_t>(b + 12);
    e.image1_size = get<std::uint32_t>(b + 16);
    e.meta_size = get<std::uint32_t>(b + 20);
    e.label0 = get<float>(b + 24);
    e.label1 = get<float>(b + 28);
    e.num_example_per_prompt = get<std::uint32_t>(b + 32);
    e.split = Split(b[36]);
    e.has_label = (b[37] & 1) != 0;
    e.are_different = (b[37] & 2) != 0;
    e.ranking_id = get<std::int64_t>(b + 40);
    e.user_id = get<std::int64_t>(b + 48);
    e.data_crc32 = get<std::uint32_t>(b + 56);
    return e;
}

inline std::array<std::uint8_t, header_size> encode_header(std::uint64_t count, std::uint64_t index_offset,
                                                            std::uint64_t file_size, std::uint32_t index_crc) {
    std::array<std::uint8_t, header_size> h{};
    std::memcpy(h.data(), magic, 8);
    put<std::uint32_t>(h.data() + 8, version);
    put<std::uint32_t>(h.data() + 12, header_size);
    put<std::uint64_t>(h.data() + 16, count);
    put<std::uint64_t>(h.data() + 24, index_offset);
    put<std::uint64_t>(h.data() + 32, file_size);
    put<std::uint32_t>(h.data() + 40, entry_size);
    put<std::uint32_t>(h.data() + 44, index_crc);
    put<std::uint32_t>(h.data() + 60, crc32(h.data(), 60));
    return h;
}
}  // namespace shard_format

// ---- reading ------------------------------------------------------------------------------------

// A shard opened read-only: mapped, header and index validated. Move-only.
class ShardFile {
public:
    ShardFile() = default;
    ShardFile(const ShardFile&) = delete;
    ShardFile& operator=(const ShardFile&) = delete;
    ShardFile(ShardFile&& o) noexcept { *this = std::move(o); }
    ShardFile& operator=(ShardFile&& o) noexcept {
        if (this != &o) {
            unmap();
            path_ = std::move(o.path_);
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
            mapped_ = std::exchange(o.mapped_, false);
            owned_ = std::move(o.owned_);
            entries_ = std::move(o.entries_);
        }
        return *this;
    }
    ~ShardFile() { unmap(); }

    static ShardFile open(const std::filesystem::path& path) {
        ShardFile s;
        s.path_ = path.string();
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) fail<IoError>("shard '", s.path_, "': cannot open: ", std::strerror(errno));
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            ::close(fd);
            fail<IoError>("shard '", s.path_, "': not a readable regular file");
        }
        s.size_ = std::size_t(st.st_size);
        if (s.size_ > 0) {
            void* p = ::mmap(nullptr, s.size_, PROT_READ, MAP_PRIVATE, fd, 0);
            if (p == MAP_FAILED) {
                const int e = errno;
                ::close(fd);
                fail<IoError>("shard '", s.path_, "': cannot map: ", std::strerror(e));
            }
            s.data_ = static_cast<const std::uint8_t*>(p);
            s.mapped_ = true;
        }
        ::close(fd);
        s.validate();
        return s;
    }
    // A shard held in memory (tests, fuzzing); `label` names it in errors.
    static ShardFile from_bytes(std::vector<std::uint8_t> bytes, std::string label = "<memory>") {
        ShardFile s;
        s.path_ = std::move(label);
        s.owned_ = std::move(bytes);
        s.data_ = s.owned_.data();
        s.size_ = s.owned_.size();
        s.validate();
        return s;
    }

    const std::string& path() const { return path_; }
    std::size_t size() const { return entries_.size(); }
    const ShardEntry& entry(std::size_t i) const {
        require<Error>(i < entries_.size(), "shard '", path_, "': record ", i, " out of range (", entries_.size(),
                       " records)");
        return entries_[i];
    }

    // Record i as views; with verify, its data CRC is checked first (CorruptRecord on mismatch).
    ShardRecord record(std::size_t i, bool verify = true) const {
        const ShardEntry& e = entry(i);
        const std::uint8_t* p = data_ + e.data_offset;
        if (verify) {
            const std::uint32_t crc = shard_format::crc32(p, std::size_t(e.data_size()));
            if (crc != e.data_crc32)
                fail<CorruptRecord>("shard '", path_, "': record ", i, ": data CRC-32 is ", crc, ", the index says ",
                                    e.data_crc32);
        }
        ShardRecord r;
        r.entry = &e;
        r.caption = std::string_view(reinterpret_cast<const char*>(p), e.caption_size);
        p += e.caption_size;
        r.image0 = {p, e.image0_size};
        p += e.image0_size;
        r.image1 = {p, e.image1_size};
        p += e.image1_size;
        r.meta = std::string_view(reinterpret_cast<const char*>(p), e.meta_size);
        return r;
    }

private:
    void validate() {
        using namespace shard_format;
        require<FormatError>(little_endian(), "shard '", path_, "': only little-endian hosts are supported");
        require<FormatError>(size_ >= header_size, "shard '", path_, "': ", size_, " bytes, shorter than the ",
                             header_size, "-byte header");
        require<FormatError>(std::memcmp(data_, magic, 8) == 0, "shard '", path_,
                             "': not a pickscore shard (bad magic)");
        const std::uint32_t ver = get<std::uint32_t>(data_ + 8);
        require<FormatError>(ver == version, "shard '", path_, "': format version ", ver, ", this reader knows ",
                             version);
        const std::uint32_t hcrc = crc32(data_, 60);
        require<FormatError>(hcrc == get<std::uint32_t>(data_ + 60), "shard '", path_, "': header CRC-32 mismatch");
        require<FormatError>(get<std::uint32_t>(data_ + 12) == header_size &&
                                 get<std::uint32_t>(data_ + 40) == entry_size,
                             "shard '", path_, "': unexpected header or index entry size");
        const std::uint64_t count = get<std::uint64_t>(data_ + 16);
        const std::uint64_t index_offset = get<std::uint64_t>(data_ + 24);
        const std::uint64_t file_size = get<std::uint64_t>(data_ + 32);
        require<FormatError>(file_size == size_, "shard '", path_, "': the header says ", file_size,
                             " bytes, the file has ", size_, " (truncated or appended to)");
        require<FormatError>(count <= (size_ - header_size) / entry_size, "shard '", path_, "': ", count,
                             " records cannot fit in ", size_, " bytes");
        require<FormatError>(index_offset >= header_size && index_offset == size_ - count * entry_size, "shard '",
                             path_, "': index offset ", index_offset, " does not match ", count,
                             " entries at the end of the file");
        const std::uint32_t icrc = crc32(data_ + index_offset, std::size_t(count * entry_size));
        require<FormatError>(icrc == get<std::uint32_t>(data_ + 44), "shard '", path_, "': index CRC-32 mismatch");
        entries_.resize(std::size_t(count));
        for (std::uint64_t i = 0; i < count; ++i) {
            const ShardEntry e = decode_entry(data_ + index_offset + i * entry_size);
            const std::uint64_t n = e.data_size();  // at most 4 * 2^32: no overflow
            require<FormatError>(e.data_offset >= header_size && e.data_offset <= index_offset &&
                                     n <= index_offset - e.data_offset,
                                 "shard '", path_, "': record ", i, " spans bytes [", e.data_offset, ", +", n,
                                 ") outside the data region [", header_size, ", ", index_offset, ")");
            require<FormatError>(known_split_code(std::uint8_t(e.split)), "shard '", path_, "': record ", i,
                                 " has unknown split code ", int(e.split));
            entries_[std::size_t(i)] = e;
        }
    }
    void unmap() noexcept {
        if (mapped_ && data_) ::munmap(const_cast<std::uint8_t*>(data_), size_);
        mapped_ = false;
        data_ = nullptr;
        size_ = 0;
    }

    std::string path_;
    const std::uint8_t* data_ = nullptr;
    std::size_t size_ = 0;
    bool mapped_ = false;
    std::vector<std::uint8_t> owned_;
    std::vector<ShardEntry> entries_;
};

// ---- writing ------------------------------------------------------------------------------------

// Streams records into a new shard: add() appends each record's data, finish() writes the index
// and the header and renames the file into place. Destroyed unfinished, it removes its temporary.
class ShardWriter {
public:
    explicit ShardWriter(std::filesystem::path dest) : dest_(std::move(dest)) {
        require<Error>(shard_format::little_endian(), "ShardWriter: only little-endian hosts are supported");
        const auto dir = dest_.has_parent_path() ? dest_.parent_path() : std::filesystem::path(".");
        tmp_ = dir / ("." + dest_.filename().string() + ".tmp-" + std::to_string(::getpid()));
        fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        if (fd_ < 0) fail<IoError>("ShardWriter: cannot create '", tmp_.string(), "': ", std::strerror(errno));
        const std::array<std::uint8_t, shard_format::header_size> zero{};
        write(zero.data(), zero.size());
    }
    ShardWriter(const ShardWriter&) = delete;
    ShardWriter& operator=(const ShardWriter&) = delete;
    ~ShardWriter() {
        if (fd_ >= 0) ::close(fd_);
        if (!tmp_.empty()) ::unlink(tmp_.c_str());
    }

    std::size_t size() const { return entries_.size(); }
    std::uint64_t bytes() const { return offset_; }

    void add(const Example& ex) {
        require<Error>(fd_ >= 0, "ShardWriter: '", dest_.string(), "' is already finished");
        auto check32 = [&](std::size_t n, const char* what) {
            require<Error>(n <= 0xffffffffu, "ShardWriter: record ", entries_.size(), ": ", what, " of ", n,
                           " bytes exceeds 4 GiB");
            return std::uint32_t(n);
        };
        ShardEntry e;
        e.data_offset = offset_;
        e.caption_size = check32(ex.caption.size(), "caption");
        e.image0_size = check32(ex.image0.size(), "image 0");
        e.image1_size = check32(ex.image1.size(), "image 1");
        e.meta_size = check32(ex.meta.size(), "meta");
        e.label0 = ex.label0;
        e.label1 = ex.label1;
        e.num_example_per_prompt = ex.num_example_per_prompt;
        e.split = ex.split;
        e.has_label = ex.has_label;
        e.are_different = ex.are_different;
        e.ranking_id = ex.ranking_id;
        e.user_id = ex.user_id;
        std::uint32_t crc = shard_format::crc32(ex.caption.data(), ex.caption.size());
        crc = shard_format::crc32(ex.image0.data(), ex.image0.size(), crc);
        crc = shard_format::crc32(ex.image1.data(), ex.image1.size(), crc);
        crc = shard_format::crc32(ex.meta.data(), ex.meta.size(), crc);
        e.data_crc32 = crc;
        write(ex.caption.data(), ex.caption.size());
        write(ex.image0.data(), ex.image0.size());
        write(ex.image1.data(), ex.image1.size());
        write(ex.meta.data(), ex.meta.size());
        entries_.push_back(e);
    }

    // Writes the index and the header, fsyncs, renames into place and fsyncs the folder.
    void finish() {
        require<Error>(fd_ >= 0, "ShardWriter: '", dest_.string(), "' is already finished");
        std::vector<std::uint8_t> index(entries_.size() * shard_format::entry_size);
        for (std::size_t i = 0; i < entries_.size(); ++i) {
            const auto b = shard_format::encode_entry(entries_[i]);
            std::memcpy(index.data() + i * shard_format::entry_size, b.data(), b.size());
        }
        const std::uint64_t index_offset = offset_;
        write(index.data(), index.size());
        const auto header = shard_format::encode_header(entries_.size(), index_offset, offset_,
                                                        shard_format::crc32(index.data(), index.size()));
        if (::pwrite(fd_, header.data(), header.size(), 0) != ssize_t(header.size()))
            fail<IoError>("ShardWriter: writing the header of '", dest_.string(), "' failed: ", std::strerror(errno));
        if (::fsync(fd_) != 0) fail<IoError>("ShardWriter: fsync of '", dest_.string(), "' failed");
        ::close(std::exchange(fd_, -1));
        if (::rename(tmp_.c_str(), dest_.c_str()) != 0)
            fail<IoError>("ShardWriter: cannot rename '", tmp_.string(), "' to '", dest_.string(), "': ",
                          std::strerror(errno));
        tmp_.clear();
        const auto dir = dest_.has_parent_path() ? dest_.parent_path() : std::filesystem::path(".");
        const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)::fsync(dfd);
            ::close(dfd);
        }
    }

private:
    void write(const void* p, std::size_t n) {
        const auto* b = static_cast<const char*>(p);
        while (n > 0) {
            const ssize_t w = ::write(fd_, b, std::min<std::size_t>(n, std::size_t(1) << 30));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) fail<IoError>("ShardWriter: writing '", tmp_.string(), "' failed: ", std::strerror(errno));
            b += w;
            n -= std::size_t(w);
            offset_ += std::uint64_t(w);
        }
    }

    std::filesystem::path dest_, tmp_;
    int fd_ = -1;
    std::uint64_t offset_ = 0;
    std::vector<ShardEntry> entries_;
};

// Writes examples to one shard file.
inline void write_shard(const std::filesystem::path& path, std::span<const Example> examples) {
    ShardWriter w(path);
    for (const Example& e : examples) w.add(e);
    w.finish();
}

}  // namespace pickscore::data
