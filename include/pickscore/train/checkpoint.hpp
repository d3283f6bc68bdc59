// pickscore/train/checkpoint.hpp — training checkpoints that survive a kill: weights, optimizer
// state, data position, RNG state and step, written atomically; and the resume side.
//
// Layout under the run's folder:
//   checkpoints/step-00000100/state.json          step, data position(s), RNG state, best metric,
//                                                 world size, sharding, the run's config
//   checkpoints/step-00000100/rank-00000.safetensors
//                                                 "master" (f32 master weights of this rank's range),
//                                                 "adam_m", "adam_v" (the moments of that range);
//                                                 one file per rank when the optimizer is sharded,
//                                                 else rank 0's alone
//   checkpoints/latest                            the name of the newest complete checkpoint
// Protocol (every rank calls save_checkpoint; the ranks meet at barriers):
//   1. rank 0 creates the fresh folder step-N.tmp (removing a leftover of a crashed save);
//   2. each writing rank writes its safetensors file there: temporary file, fsync, rename;
//   3. rank 0 writes state.json the same way, fsyncs the folder, renames step-N.tmp to step-N,
//      fsyncs checkpoints/, then replaces `latest` (temporary, fsync, rename, fsync);
//   4. rank 0 removes the checkpoints older than the newest `keep` ones.
// A kill or an error at any point leaves `latest` naming the previous complete checkpoint (a
// step-N.tmp without state.json is never read); load_checkpoint reads only what `latest` names.
// CheckpointOptions::fail_after_bytes makes the writer throw after that many bytes (the test of a
// failure in the middle of a save).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../core/tensor.hpp"
#include "../data/loader.hpp"
#include "../io/json.hpp"
#include "../io/safetensors.hpp"
#include "comm.hpp"

namespace pickscore::train {

struct TrainState {
    std::int64_t step = 0;                    // optimizer updates done
    std::vector<data::Position> data;         // per rank
    Rng::State rng{};
    double best_metric = -1.0;                // best validation pairwise accuracy so far (-1: none)
    std::int64_t best_step = -1;
    int world = 1;
    bool sharded = false;
    std::string dtype;                        // the model's element type (the flat layout depends on it)
    std::int64_t flat_size = 0;               // elements of the model's flat parameter buffer
    std::string config;                       // the run's configuration (JSON text)
};

struct CheckpointOptions {
    int keep = 2;                             // complete checkpoints kept (the newest ones)
    std::int64_t fail_after_bytes = -1;       // test hook: throw IoError after this many bytes
};

inline std::string step_dir_name(std::int64_t step) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
    return buf;
}
inline std::string rank_file_name(int rank) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "rank-%05d.safetensors", rank);
    return buf;
}

namespace detail {

inline void fsync_dir(const std::filesystem::path& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)::fsync(fd);
        ::close(fd);
    }
}

// Writes bytes through io's atomic file, counting them against the failure hook.
class HookedWriter {
public:
    HookedWriter(const std::filesystem::path& dest, std::int64_t* budget) : f_(dest), budget_(budget), dest_(dest) {}
    void write(const void* p, std::size_t n) {
        if (budget_ && *budget_ >= 0) {
            if (std::int64_t(n) > *budget_) {
                f_.write(p, std::size_t(*budget_));  // part of it, then the "crash"
                *budget_ = 0;
                fail<IoError>("checkpoint: simulated failure while writing '", dest_.string(), "'");
            }
            *budget_ -= std::int64_t(n);
        }
        f_.write(p, n);
    }
    void commit() { f_.commit(); }

private:
    io::detail::AtomicFile f_;
    std::int64_t* budget_;
    std::filesystem::path dest_;
};

inline void write_tensors(const std::filesystem::path& path, const std::vector<io::TensorToWrite>& tensors,
                          std::int64_t* budget) {
    auto [header, order] = io::detail::safetensors_plan(tensors, {{"format", "pickscore-train"}});
    HookedWriter w(path, budget);
    w.write(header.data(), header.size());
    for (const io::TensorToWrite* t : order)
        if (t->bytes()) w.write(t->data, std::size_t(t->bytes()));
    w.commit();
}

inline void write_text(const std::filesystem::path& path, const std::string& text, std::int64_t* budget) {
    HookedWriter w(path, budget);
    w.write(text.data(), text.size());
    w.commit();
}

inline io::Json state_to_json(const TrainState& s) {
    io::Json j = io::Json::Object{};
    j.set("format", io::Json("pickscore-train-state"));
    j.set("version", io::Json(1));
    j.set("step", io::Json(s.step));
    io::Json data = io::Json::Array{};
    for (const data::Position& p : s.data) {
        io::Json d = io::Json::Object{};
        d.set("epoch", io::Json(p.epoch));
        d.set("cursor", io::Json(p.cursor));
        d.set("skipped", io::Json(p.skipped));
        data.push_back(std::move(d));
    }
    j.set("data", std::move(data));
    io::Json rng = io::Json::Array{};
    for (std::uint64_t w : s.rng) rng.push_back(io::Json(std::to_string(w)));  // as strings: JSON numbers are doubles
    j.set("rng", std::move(rng));
    j.set("best_metric", io::Json(s.best_metric));
    j.set("best_step", io::Json(s.best_step));
    j.set("world", io::Json(s.world));
    j.set("sharded", io::Json(s.sharded));
    j.set("dtype", io::Json(s.dtype));
    j.set("flat_size", io::Json(s.flat_size));
    j.set("config", io::Json(s.config));
    return j;
}

inline TrainState state_from_json(const io::Json& j, const std::string& where) {
    try {
        require<FormatError>(j["format"].as_string() == "pickscore-train-state", "not a training state");
        require<FormatError>(j["version"].as_int64() == 1, "unknown version ", j["version"].as_int64());
        TrainState s;
        s.step = j["step"].as_int64();
        const io::Json& data = j["data"];
        for (std::size_t i = 0; i < data.size(); ++i)
            s.data.push_back({data[i]["epoch"].as_int64(), data[i]["cursor"].as_int64(), data[i]["skipped"].as_int64()});
        const io::Json& rng = j["rng"];
        require<FormatError>(rng.size() == 4, "rng must hold 4 words");
        for (std::size_t i = 0; i < 4; ++i) s.rng[i] = std::stoull(rng[i].as_string());
        s.best_metric = j["best_metric"].as_double();
        s.best_step = j["best_step"].as_int64();
        s.world = int(j["world"].as_int64());
        s.sharded = j["sharded"].as_bool();
        s.dtype = j["dtype"].as_string();
        s.flat_size = j["flat_size"].as_int64();
        s.config = j["config"].as_string();
        return s;
    } catch (const std::exception& e) {
        fail<FormatError>(where, ": ", e.what());
    }
}

}  // namespace detail

// The complete checkpoint `latest` names under run_dir, if any.
inline std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& run_dir) {
    namespace fs = std::filesystem;
    const fs::path latest = run_dir / "checkpoints" / "latest";
    std::ifstream f(latest);
    if (!f) return std::nullopt;
    std::string name;
    std::getline(f, name);
    require<FormatError>(!name.empty() && name.find('/') == std::string::npos, "checkpoint: '", latest.string(),
                         "' does not name a checkpoint folder");
    const fs::path dir = run_dir / "checkpoints" / name;
    std::error_code ec;
    require<FormatError>(fs::exists(dir / "state.json", ec), "checkpoint: '", latest.string(), "' names '",
                         dir.string(), "', which has no state.json");
    return dir;
}

// One rank's optimizer shard to save or fill: flat f32 (or f64) views of its range.
template <class M>
struct OptimizerShard {
    TensorView<M, Cpu> master, m, v;
};

// Saves a checkpoint (every rank calls it, with its own shard in host memory; `writes` says whether
// this rank's shard goes to disk: all ranks when sharded, else rank 0 alone). Returns the folder.
template <class M>
std::filesystem::path save_checkpoint(const std::filesystem::path& run_dir, const TrainState& state,
                                      const OptimizerShard<M>& shard, bool writes, Communicator& comm,
                                      const CheckpointOptions& opt = {}) {
    namespace fs = std::filesystem;
    const fs::path root = run_dir / "checkpoints";
    const std::string name = step_dir_name(state.step);
    const fs::path tmp = root / (name + ".tmp"), final_dir = root / name;
    std::int64_t budget = opt.fail_after_bytes;
    std::int64_t* hook = opt.fail_after_bytes >= 0 ? &budget : nullptr;
    // A rank that fails must not leave the others waiting at a barrier: errors are collected and
    // shared (a host sum of failure flags) before any barrier that follows a write.
    auto agree = [&](bool failed) {
        double f = failed ? 1.0 : 0.0;
        comm.all_reduce_sum_host(&f, 1);
        return f == 0.0;
    };
    std::string error;
    if (comm.rank() == 0) {
        try {
            fs::create_directories(root);
            fs::remove_all(tmp);
            fs::create_directories(tmp);
        } catch (const std::exception& e) {
            error = e.what();
        }
    }
    if (!agree(!error.empty())) fail<IoError>("checkpoint: cannot prepare '", tmp.string(), "': ", error);
    if (writes) {
        try {
            detail::write_tensors(tmp / rank_file_name(comm.rank()),
                                  {io::tensor_to_write("master", shard.master), io::tensor_to_write("adam_m", shard.m),
                                   io::tensor_to_write("adam_v", shard.v)},
                                  hook);
        } catch (const std::exception& e) {
            error = e.what();
        }
    }
    if (!agree(!error.empty())) fail<IoError>("checkpoint step ", state.step, " failed: ", error.empty() ? "on another rank" : error);
    if (comm.rank() == 0) {
        try {
            detail::write_text(tmp / "state.json", io::json::dump(detail::state_to_json(state), 2) + "\n", hook);
            detail::fsync_dir(tmp);
            fs::remove_all(final_dir);
            fs::rename(tmp, final_dir);
            detail::fsync_dir(root);
            detail::write_text(root / "latest", name + "\n", hook);
            // Older checkpoints beyond `keep`, and leftovers of failed saves.
            std::vector<fs::path> done;
            for (const auto& e : fs::directory_iterator(root)) {
                const std::string n = e.path().filename().string();
                if (!e.is_directory() || n.rfind("step-", 0) != 0) continue;
                if (n.size() > 4 && n.substr(n.size() - 4) == ".tmp") {
                    fs::remove_all(e.path());
                    continue;
                }
                done.push_back(e.path());
            }
            std::sort(done.begin(), done.end());
            const std::size_t keep = std::size_t(std::max(1, opt.keep));
            for (std::size_t i = 0; i + keep < done.size(); ++i) fs::remove_all(done[i]);
        } catch (const std::exception& e) {
            error = e.what();
        }
    }
    if (!agree(!error.empty())) fail<IoError>("checkpoint step ", state.step, " failed: ", error.empty() ? "on rank 0" : error);
    return final_dir;
}

// Reads the state of a checkpoint folder.
inline TrainState read_checkpoint_state(const std::filesystem::path& dir) {
    const std::filesystem::path p = dir / "state.json";
    std::ifstream f(p, std::ios::binary);
    require<IoError>(bool(f), "checkpoint: cannot read '", p.string(), "'");
    std::stringstream ss;
    ss << f.rdbuf();
    io::Json j;
    try {
        j = io::json::parse(ss.str());
    } catch (const std::exception& e) {
        fail<FormatError>(p.string(), ": ", e.what());
    }
    return detail::state_from_json(j, p.string());
}

// Fills this rank's shard from a checkpoint folder: from its own file when the checkpoint is
// sharded (the world size must match), else from rank 0's file (the shard range [lo, hi) of it).
template <class M>
void load_checkpoint_shard(const std::filesystem::path& dir, const TrainState& state, const OptimizerShard<M>& shard,
                           std::int64_t lo, Communicator& comm) {
    require<FormatError>(!state.sharded || state.world == comm.world(), "checkpoint '", dir.string(),
                         "' was written by ", state.world, " ranks with a sharded optimizer; resume it with ",
                         state.world, " ranks (this run has ", comm.world(), ")");
    const int src = state.sharded ? comm.rank() : 0;
    const io::SafetensorsFile f = io::SafetensorsFile::open(dir / rank_file_name(src));
    const std::int64_t off = state.sharded ? 0 : lo;
    for (auto [name, view] : {std::pair{"master", shard.master}, std::pair{"adam_m", shard.m}, std::pair{"adam_v", shard.v}}) {
        Tensor<M, Cpu> all = f.load<M>(name);
        require<FormatError>(all.rank() == 1 && off + view.numel() <= all.numel(), "checkpoint '", dir.string(),
                             "': tensor '", name, "' has shape ", all.shape(), ", expected at least ",
                             off + view.numel(), " elements");
        copy<M>(view, all.view().slice(off, off + view.numel()));
    }
}

}  // namespace pickscore::train
