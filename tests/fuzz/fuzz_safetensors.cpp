// libFuzzer target: the safetensors header parser and tensor reader on arbitrary bytes.
// A file that parses must: have every tensor inside the data section, contiguous and non-overlapping
// (checked again here, independently); read into float (floating dtypes) or int32 (I32, I64 within
// range) without error other than pickscore::FormatError for dtypes the reader does not convert;
// and survive write -> parse with the same names, dtypes, shapes, metadata and bytes when every
// tensor has a dtype the writer knows. Every parse error must be a pickscore::FormatError.
#include <pickscore/io/safetensors.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace io = pickscore::io;
    using pickscore::FormatError;
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    io::SafetensorsFile f;
    try {
        f = io::SafetensorsFile::from_memory(bytes, "fuzz");
    } catch (const FormatError&) {
        return 0;
    }
    // Independent layout check: tensors tile [0, data) exactly, and the data ends the file.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
    for (const auto& e : f.tensors()) {
        if (e.begin > e.end) std::abort();
        if (e.end - e.begin != std::uint64_t(e.numel()) * e.element_size) std::abort();
        // (from_memory keeps its own copy; AddressSanitizer sees any read outside it.)
        if (f.bytes(e).size() != e.end - e.begin) std::abort();
        ranges.emplace_back(e.begin, e.end);
    }
    std::sort(ranges.begin(), ranges.end());
    std::uint64_t cursor = 0;
    for (const auto& [b, e] : ranges) {
        if (b != cursor) std::abort();
        cursor = e;
    }
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
    if (8 + n + cursor != size) std::abort();
    // Reads.
    bool writable = true;
    std::vector<pickscore::Tensor<float>> floats;
    std::vector<pickscore::Tensor<std::int32_t>> ints;
    for (const auto& e : f.tensors()) {
        if (e.numel() > (std::int64_t(1) << 22)) return 0;  // keep memory bounded
        const auto dt = e.pick_dtype();
        try {
            if (dt && *dt != pickscore::DType::i32) {
                floats.push_back(f.load<float>(e.name));
                (void)f.load<pickscore::bf16>(e.name);
            } else {
                ints.push_back(f.load<std::int32_t>(e.name));
                if (e.dtype != "I32") writable = false;
            }
        } catch (const FormatError&) {
            if (dt) std::abort();  // a dtype the reader converts must read
            writable = false;
        }
    }
    if (!writable) return 0;
    // Round trip through the writer (same dtypes: pass the raw bytes).
    std::vector<io::TensorToWrite> list;
    for (const auto& e : f.tensors())
        list.push_back(io::TensorToWrite{e.name, *e.pick_dtype(), e.shape, f.bytes(e).data()});
    std::vector<std::byte> again;
    try {
        again = io::safetensors_bytes(list, f.metadata());
    } catch (const pickscore::Error&) {
        // Names the writer refuses (empty) are fine to refuse.
        return 0;
    }
    const auto g = io::SafetensorsFile::from_memory(again, "again");
    if (g.size() != f.size() || g.metadata() != f.metadata()) std::abort();
    for (const auto& e : f.tensors()) {
        const auto* h = g.find(e.name);
        if (!h || h->dtype != e.dtype || !(h->shape == e.shape)) std::abort();
        const auto a = f.bytes(e), b = g.bytes(*h);
        if (a.size() != b.size() || (a.size() && std::memcmp(a.data(), b.data(), a.size()) != 0)) std::abort();
    }
    return 0;
}
