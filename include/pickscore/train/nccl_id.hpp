// pickscore/train/nccl_id.hpp — how the processes of a launch agree on NCCL's unique id, without MPI:
// rank 0 writes it to a file all ranks can see, the others wait for that file. Plain C++ (no NCCL,
// no CUDA), so that it is tested on every machine; train/nccl.hpp uses it.
//
//   write_nccl_id_file("/shared/run1/nccl_id", id_bytes, world, nccl_launch_job());      // rank 0
//   auto id = wait_for_nccl_id_file("/shared/run1/nccl_id", world, nccl_launch_job(), 300s);  // others
//
// The file is text, written to a temporary name beside it and renamed (so a reader never sees half
// of it):
//     pickscore-nccl-id 1
//     world 4
//     job 12345.0            (the launch's identity when the launcher exports one; else "-")
//     id 0a1b...             (the id's bytes as lowercase hex)
// A reader accepts a file of its own world size and job. A file of another job is a leftover of an
// earlier launch: the reader keeps waiting for rank 0 to replace it (and says so at the time-out).
// A file that is not in this format, or of the same job with another world size, is an error at
// once. Rank 0 removes the file once every rank has joined (train/nccl.hpp); a launch that crashed
// may leave it behind, so where the launcher exports no job identity, use a fresh path per launch.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <unistd.h>

#include "../core/error.hpp"

namespace pickscore::train {

// The bytes of an ncclUniqueId (NCCL_UNIQUE_ID_BYTES in nccl.h; train/nccl.hpp checks they agree).
inline constexpr std::size_t nccl_id_size = 128;

inline std::string hex_encode(std::span<const std::byte> bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    s.reserve(bytes.size() * 2);
    for (std::byte b : bytes) {
        s += digits[std::to_integer<unsigned>(b) >> 4];
        s += digits[std::to_integer<unsigned>(b) & 15u];
    }
    return s;
}

// Exactly `size` bytes from 2*size hex digits (either case); FormatError naming `what` otherwise.
inline std::vector<std::byte> hex_decode(std::string_view text, std::size_t size, std::string_view what) {
    require<FormatError>(text.size() == 2 * size, what, ": expected ", 2 * size, " hex digits (", size,
                         " bytes), got ", text.size(), " characters");
    auto value = [&](char c, std::size_t at) -> unsigned {
        if (c >= '0' && c <= '9') return unsigned(c - '0');
        if (c >= 'a' && c <= 'f') return unsigned(c - 'a' + 10);
        if (c >= 'A' && c <= 'F') return unsigned(c - 'A' + 10);
        fail<FormatError>(what, ": '", c, "' at position ", at, " is not a hex digit");
    };
    std::vector<std::byte> out(size);
    for (std::size_t i = 0; i < size; ++i)
        out[i] = std::byte((value(text[2 * i], 2 * i) << 4) | value(text[2 * i + 1], 2 * i + 1));
    return out;
}

// The identity of this launch, the same in all its processes, from the launcher's environment
// (PICKSCORE_JOB_ID; Slurm's job and step; Open MPI's job id or PMIx namespace; torchrun's run id),
// or "" when there is none.
inline std::string nccl_launch_job() {
    auto get = [](const char* n) -> std::string {
        const char* v = std::getenv(n);
        return v ? std::string(v) : std::string();
    };
    if (std::string v = get("PICKSCORE_JOB_ID"); !v.empty()) return v;
    if (std::string v = get("SLURM_JOB_ID"); !v.empty()) {
        const std::string step = get("SLURM_STEP_ID");
        return "slurm:" + v + (step.empty() ? "" : "." + step);
    }
    for (const char* n : {"OMPI_MCA_ess_base_jobid", "PMIX_NAMESPACE", "TORCHELASTIC_RUN_ID"})
        if (std::string v = get(n); !v.empty()) return std::string(n) + ":" + v;
    return "";
}

struct NcclIdFile {
    int world = 0;
    std::string job;  // "" when the writer had none
    std::vector<std::byte> id;
};

inline std::string format_nccl_id_file(std::span<const std::byte> id, int world, std::string_view job) {
    require(id.size() == nccl_id_size, "NCCL id file: the id has ", id.size(), " bytes, expected ", nccl_id_size);
    require(world >= 1, "NCCL id file: world size ", world);
    for (char c : job)
        require(c > ' ' && c != 127, "NCCL id file: the job identity '", job, "' holds a space or control character");
    std::ostringstream s;
    s << "pickscore-nccl-id 1\nworld " << world << "\njob " << (job.empty() ? std::string("-") : std::string(job))
      << "\nid " << hex_encode(id) << "\n";
    return s.str();
}

// Parses the text of an id file; FormatError naming `where` on anything else.
inline NcclIdFile parse_nccl_id_file(std::string_view text, const std::string& where) {
    std::istringstream in{std::string(text)};
    std::string magic, version, key, value;
    in >> magic >> version;
    require<FormatError>(magic == "pickscore-nccl-id" && version == "1", "'", where,
                         "' is not a pickscore NCCL id file (it should start with 'pickscore-nccl-id 1')");
    NcclIdFile f;
    bool have_world = false, have_job = false, have_id = false;
    while (in >> key) {
        require<FormatError>(bool(in >> value), "'", where, "': '", key, "' has no value");
        if (key == "world" && !have_world) {
            char* end = nullptr;
            const long w = std::strtol(value.c_str(), &end, 10);
            require<FormatError>(end && *end == '\0' && w >= 1 && w < (1 << 20), "'", where, "': world '", value,
                                 "' is not a valid size");
            f.world = int(w);
            have_world = true;
        } else if (key == "job" && !have_job) {
            f.job = value == "-" ? std::string() : value;
            have_job = true;
        } else if (key == "id" && !have_id) {
            f.id = hex_decode(value, nccl_id_size, "'" + where + "': id");
            have_id = true;
        } else {
            fail<FormatError>("'", where, "': unexpected or repeated entry '", key, "'");
        }
    }
    require<FormatError>(have_world && have_job && have_id, "'", where, "' is incomplete (needs world, job and id)");
    return f;
}

// Writes the id file atomically (a temporary file in the same folder, then rename); creates the
// folder if needed. IoError on failure.
inline void write_nccl_id_file(const std::filesystem::path& path, std::span<const std::byte> id, int world,
                               std::string_view job) {
    namespace fs = std::filesystem;
    const std::string text = format_nccl_id_file(id, world, job);
    std::error_code ec;
    if (path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
    const fs::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        f << text;
        f.flush();
        if (!f) {
            fs::remove(tmp, ec);
            fail<IoError>("cannot write the NCCL id file '", tmp.string(), "'");
        }
    }
    fs::rename(tmp, path, ec);
    if (ec) {
        std::error_code ignored;
        fs::remove(tmp, ignored);
        fail<IoError>("cannot rename '", tmp.string(), "' to the NCCL id file '", path.string(), "': ", ec.message());
    }
}

// Waits until `path` holds the id of this launch (world size `world`, job `job`) and returns it.
// Errors: a file that is not an id file (FormatError), one of this job with another world size
// (Error), nothing acceptable within `timeout` (Error: rank 0 did not write it, or the ranks do
// not share that folder).
inline std::vector<std::byte> wait_for_nccl_id_file(const std::filesystem::path& path, int world, std::string_view job,
                                                    std::chrono::milliseconds timeout,
                                                    std::chrono::milliseconds poll = std::chrono::milliseconds(20)) {
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    std::string stale;  // the job of a leftover file, for the time-out message
    for (auto pause = poll;; pause = std::min(pause * 2, std::chrono::milliseconds(500))) {
        std::ifstream f(path, std::ios::binary);
        if (f) {
            std::stringstream ss;
            ss << f.rdbuf();
            const NcclIdFile got = parse_nccl_id_file(ss.str(), path.string());
            if (got.job == job) {
                require(got.world == world, "NCCL id file '", path.string(), "' is for ", got.world,
                        " ranks, but this launch has ", world);
                return got.id;
            }
            stale = got.job.empty() ? "(none)" : got.job;
        }
        const auto waited = clock::now() - start;
        if (waited >= timeout)
            fail<Error>("waited ", std::chrono::duration_cast<std::chrono::milliseconds>(waited).count() / 1000.0,
                        " s for rank 0 to write the NCCL id file '", path.string(), "'",
                        stale.empty() ? std::string(" (it does not exist)")
                                      : " (it holds the id of another launch, job " + stale + "; this one is " +
                                            (job.empty() ? std::string("(none)") : std::string(job)) + ")",
                        ": is rank 0 running, and do all ranks see the same folder? (PICKSCORE_NCCL_ID_TIMEOUT sets "
                        "the wait in seconds)");
        std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(
            pause, std::chrono::duration_cast<std::chrono::milliseconds>(timeout - waited) + std::chrono::milliseconds(1)));
    }
}

}  // namespace pickscore::train
