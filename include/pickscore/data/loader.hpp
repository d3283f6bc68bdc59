// pickscore/data/loader.hpp — batches of decoded, preprocessed and tokenised preference examples,
// prepared ahead by background threads, in an order fixed by a seed.
// pickscore-requires: pickscore::io
//
//   data::DataLoader loader(train_set, tokenizer, {.batch = 128, .seed = 42, .workers = 8});
//   while (auto b = loader.next()) { ... b->ids, b->pixels, b->labels, b->counts ... }
//   data::Position p = loader.position();        // goes into the checkpoint
//   loader.seek(p);                              // after a restart: the same batches follow
//
// Order: epoch e visits the records in a permutation drawn from (seed, e) alone (Fisher-Yates over
// an Rng seeded from both), or in order without shuffle. A step takes the next `batch` records of
// the epoch — the global batch of all ranks — and rank r of `world` gets the r-th of `world` equal
// parts of it (batch must be divisible by world). drop_last: an epoch ends when fewer than `batch`
// records remain (they are not used); otherwise the last batch is smaller (and split the same
// way). With loop the next epoch follows; without, next() returns nullopt after the pass.
// Position {epoch, cursor (records of the epoch consumed), skipped} is all the state there is: a
// loader started at a position produces exactly the batches that followed it.
//
// Work: `workers` threads each build whole batches (read, CRC check, decode, preprocess, tokenize)
// and at most `prefetch` batches wait ahead of the consumer; next() hands them out in order. The
// workers call no parallel_for (they would queue behind the trainer's), so they add real threads.
//
// Corrupt records — a shard CRC mismatch, an image that does not decode, an unreadable manifest
// image, invalid labels — are skipped: the batch is smaller by them, and Batch::skipped lists
// their messages. Past max_corrupt skipped records in total (counted in consumption order, so the
// count is exact across restarts) next() throws an Error that names the last one. The loss
// weights are the trainer's business (normalised over the records that did arrive).
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../core/tensor.hpp"
#include "../io/image_decode.hpp"
#include "../io/image_preprocess.hpp"
#include "../io/tokenizer.hpp"
#include "dataset.hpp"

namespace pickscore::data {

struct LoaderOptions {
    std::int64_t batch = 128;  // examples per step over all ranks (the global batch)
    int rank = 0;
    int world = 1;
    bool shuffle = true;
    std::uint64_t seed = 42;
    bool drop_last = true;
    bool loop = true;          // a new epoch after each (training); false: one pass (evaluation)
    int workers = 2;           // background threads
    int prefetch = 0;          // batches prepared ahead (0: 2 per worker)
    io::PreprocessOptions preprocess{};
    io::DecodeOptions decode{};
    int context_length = 77;
    std::int64_t max_corrupt = 100;  // skipped records allowed in total; -1: no limit
    bool verify_crc = true;          // check each shard record's CRC-32 before decoding
};

// Where a loader stands: the next batch starts at record `cursor` of epoch `epoch`'s order;
// `skipped` corrupt records were skipped (by this rank) before it.
struct Position {
    std::int64_t epoch = 0, cursor = 0, skipped = 0;
    bool operator==(const Position&) const = default;
};

// One rank's share of one step's global batch.
struct Batch {
    Tensor<std::int32_t, Cpu> ids;  // [N, context_length] (host)
    Tensor<float, Cpu> pixels;      // [N, 2, 3, S, S]
    Tensor<float, Cpu> labels;      // [N, 2]
    Tensor<float, Cpu> counts;      // [N] num_example_per_prompt
    std::vector<std::int64_t> index;    // data set indices of the N records
    std::vector<std::string> captions;  // the N prompts
    std::vector<std::string> skipped;   // messages of the records of this share that were skipped
    std::int64_t epoch = 0, first = 0;  // the global batch: records [first, first + global) of the epoch
    std::int64_t global = 0;            // size of the global batch (before skipping)
    Position next;                      // the loader's position after this batch
    std::int64_t size() const { return std::int64_t(index.size()); }
};

// The records of epoch e in visiting order.
inline std::vector<std::int64_t> epoch_order(std::int64_t n, std::uint64_t seed, std::int64_t epoch, bool shuffle) {
    std::vector<std::int64_t> order(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) order[std::size_t(i)] = i;
    if (!shuffle) return order;
    Rng rng(seed ^ (0x9e3779b97f4a7c15ull * std::uint64_t(epoch + 1)));
    for (std::int64_t i = n - 1; i > 0; --i) std::swap(order[std::size_t(i)], order[rng.below(std::uint64_t(i + 1))]);
    return order;
}

// Decodes, preprocesses and tokenises one record into pixels [2, 3, S, S] and ids [L]; throws on
// a bad record (the loader's skip path).
inline void prepare_record(TensorView<float, Cpu> pixels /*2,3,S,S*/, std::span<std::int32_t> ids, const Record& r,
                           const io::Tokenizer& tok, const io::PreprocessOptions& pre, const io::DecodeOptions& dec) {
    detail::check_labels(r.label, "record '" + r.image_name[0] + "'");
    require<FormatError>(r.num_example_per_prompt > 0, "record '", r.image_name[0],
                         "': num_example_per_prompt must be positive, got ", r.num_example_per_prompt);
    for (std::int64_t k = 0; k < 2; ++k) {
        const io::RgbImage img = io::decode_image(r.image[std::size_t(k)], r.image_name[std::size_t(k)], dec);
        io::preprocess_image(pixels.select(k), img, pre, /*parallel=*/false);
    }
    tok.tokenize_into(r.caption, ids);
}

class DataLoader {
public:
    DataLoader(Dataset data, std::shared_ptr<const io::Tokenizer> tokenizer, LoaderOptions options,
               Position start = {})
        : data_(std::move(data)), tok_(std::move(tokenizer)), opt_(std::move(options)) {
        require(tok_ != nullptr, "DataLoader: no tokenizer");
        require(opt_.batch >= 1, "DataLoader: batch must be at least 1, got ", opt_.batch);
        require(opt_.world >= 1 && opt_.rank >= 0 && opt_.rank < opt_.world, "DataLoader: rank ", opt_.rank,
                " of world ", opt_.world);
        require(opt_.batch % opt_.world == 0, "DataLoader: batch ", opt_.batch, " is not divisible by world size ",
                opt_.world);
        require(opt_.workers >= 1, "DataLoader: workers must be at least 1");
        require(opt_.context_length >= 2, "DataLoader: context_length must be at least 2");
        require(!data_.empty(), "DataLoader: the data set is empty");
        require(!opt_.drop_last || data_.size() >= opt_.batch, "DataLoader: drop_last with batch ", opt_.batch,
                " but only ", data_.size(), " records: no full batch");
        if (opt_.prefetch <= 0) opt_.prefetch = 2 * opt_.workers;
        seek(start);
    }
    DataLoader(const DataLoader&) = delete;
    DataLoader& operator=(const DataLoader&) = delete;
    ~DataLoader() { stop(); }

    const LoaderOptions& options() const { return opt_; }
    const Dataset& dataset() const { return data_; }
    std::int64_t batches_per_epoch() const {
        const std::int64_t n = data_.size();
        return opt_.drop_last ? n / opt_.batch : (n + opt_.batch - 1) / opt_.batch;
    }
    // Where the next batch starts (what a checkpoint saves).
    Position position() const { return pos_; }
    std::int64_t skipped() const { return pos_.skipped; }

    // Restarts the workers at p.
    void seek(const Position& p) {
        require(p.epoch >= 0 && p.cursor >= 0 && p.skipped >= 0, "DataLoader::seek: invalid position");
        stop();
        pos_ = p;
        plan_ = p;
        normalise(plan_);
        pos_.epoch = plan_.epoch;
        pos_.cursor = plan_.cursor;
        next_seq_ = consumed_seq_ = 0;
        ready_.clear();
        error_ = nullptr;
        stopping_ = false;
        for (int w = 0; w < opt_.workers; ++w) workers_.emplace_back([this] { work(); });
    }

    // The next batch of this rank, or nullopt at the end of a single pass.
    std::optional<Batch> next() {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return error_ || ready_.count(consumed_seq_) > 0; });
        if (error_) std::rethrow_exception(error_);
        auto it = ready_.find(consumed_seq_);
        std::optional<Batch> b = std::move(it->second);
        ready_.erase(it);
        ++consumed_seq_;
        cv_.notify_all();
        if (!b) return std::nullopt;  // the end of the pass (no loop)
        pos_.skipped += std::int64_t(b->skipped.size());
        pos_.epoch = b->next.epoch;
        pos_.cursor = b->next.cursor;
        b->next = pos_;
        if (opt_.max_corrupt >= 0 && pos_.skipped > opt_.max_corrupt) {
            const std::string last = b->skipped.empty() ? std::string("(on another rank)") : b->skipped.back();
            fail<Error>("DataLoader: ", pos_.skipped, " corrupt records skipped, more than the limit of ",
                        opt_.max_corrupt, "; the last: ", last);
        }
        return b;
    }

private:
    // Global batch plan: records [cursor, cursor + size) of epoch's order; size 0 = end of the pass.
    struct Plan {
        std::int64_t epoch = 0, cursor = 0, size = 0;
    };

    std::int64_t usable() const {
        const std::int64_t n = data_.size();
        return opt_.drop_last ? n / opt_.batch * opt_.batch : n;
    }
    // A position at the end of an epoch becomes the start of the next one (with loop).
    void normalise(Position& p) const {
        if (p.cursor >= usable() && opt_.loop) {
            p.epoch += 1;
            p.cursor = 0;
        }
    }

    // Under m_: the next plan, advancing plan_.
    Plan take_plan() {
        Plan p;
        if (plan_.cursor >= usable()) return p;  // size 0: the end of the pass (without loop)
        p.epoch = plan_.epoch;
        p.cursor = plan_.cursor;
        p.size = std::min(opt_.batch, usable() - plan_.cursor);
        plan_.cursor += p.size;
        normalise(plan_);
        return p;
    }

    std::shared_ptr<const std::vector<std::int64_t>> order(std::int64_t epoch) {
        std::lock_guard<std::mutex> lk(order_m_);
        auto it = orders_.find(epoch);
        if (it != orders_.end()) return it->second;
        auto o = std::make_shared<const std::vector<std::int64_t>>(
            epoch_order(data_.size(), opt_.seed, epoch, opt_.shuffle));
        orders_[epoch] = o;
        while (orders_.size() > 3) orders_.erase(orders_.begin());
        return o;
    }

    Batch build(const Plan& p) {
        const auto ord = order(p.epoch);
        const std::int64_t W = opt_.world, r = opt_.rank;
        const std::int64_t lo = p.cursor + p.size * r / W, hi = p.cursor + p.size * (r + 1) / W;
        const std::int64_t S = opt_.preprocess.size, L = opt_.context_length;
        const std::int64_t want = hi - lo;
        Tensor<float, Cpu> pix(Shape{std::max<std::int64_t>(want, 1), 2, 3, S, S});
        Tensor<std::int32_t, Cpu> ids(Shape{std::max<std::int64_t>(want, 1), L});
        Batch b;
        b.epoch = p.epoch;
        b.first = p.cursor;
        b.global = p.size;
        std::vector<std::array<float, 2>> labels;
        std::vector<float> counts;
        for (std::int64_t j = lo; j < hi; ++j) {
            const std::int64_t idx = (*ord)[std::size_t(j)];
            const std::int64_t slot = b.size();
            try {
                const Record rec = data_.get(idx, opt_.verify_crc);
                prepare_record(pix.select(slot), std::span<std::int32_t>(ids.data() + slot * L, std::size_t(L)), rec,
                               *tok_, opt_.preprocess, opt_.decode);
                b.index.push_back(idx);
                b.captions.push_back(rec.caption);
                labels.push_back(rec.label);
                counts.push_back(rec.num_example_per_prompt);
            } catch (const std::bad_alloc&) {
                throw;
            } catch (const std::exception& e) {
                b.skipped.push_back("record " + std::to_string(idx) + ": " + e.what());
            }
        }
        const std::int64_t N = b.size();
        b.pixels = Tensor<float, Cpu>(Shape{N, 2, 3, S, S});
        b.ids = Tensor<std::int32_t, Cpu>(Shape{N, L});
        if (N > 0) {
            copy<float>(b.pixels, pix.slice(0, N));
            copy<std::int32_t>(b.ids, ids.slice(0, N));
        }
        b.labels = Tensor<float, Cpu>(Shape{N, 2});
        b.counts = Tensor<float, Cpu>(Shape{N});
        for (std::int64_t i = 0; i < N; ++i) {
            b.labels[2 * i] = labels[std::size_t(i)][0];
            b.labels[2 * i + 1] = labels[std::size_t(i)][1];
            b.counts[i] = counts[std::size_t(i)];
        }
        b.next = {p.epoch, p.cursor + p.size, 0};
        normalise(b.next);
        return b;
    }

    void work() {
        for (;;) {
            Plan p;
            std::uint64_t seq;
            {
                std::unique_lock<std::mutex> lk(m_);
                cv_.wait(lk, [&] {
                    return stopping_ || next_seq_ < consumed_seq_ + std::uint64_t(opt_.prefetch);
                });
                if (stopping_) return;
                seq = next_seq_++;
                p = take_plan();
            }
            std::optional<Batch> b;
            try {
                if (p.size > 0) b = build(p);
            } catch (...) {
                std::lock_guard<std::mutex> lk(m_);
                if (!error_) error_ = std::current_exception();
                cv_.notify_all();
                return;
            }
            std::lock_guard<std::mutex> lk(m_);
            ready_.emplace(seq, std::move(b));
            cv_.notify_all();
        }
    }

    void stop() {
        {
            std::lock_guard<std::mutex> lk(m_);
            stopping_ = true;
        }
        cv_.notify_all();
        for (auto& t : workers_) t.join();
        workers_.clear();
    }

    Dataset data_;
    std::shared_ptr<const io::Tokenizer> tok_;
    LoaderOptions opt_;
    Position pos_;   // consumer side: where the next batch to hand out starts
    Position plan_;  // producer side: where the next batch to build starts (under m_)
    std::mutex m_;
    std::condition_variable cv_;
    std::uint64_t next_seq_ = 0, consumed_seq_ = 0;
    std::map<std::uint64_t, std::optional<Batch>> ready_;
    std::exception_ptr error_;
    bool stopping_ = false;
    std::vector<std::thread> workers_;
    std::mutex order_m_;
    std::map<std::int64_t, std::shared_ptr<const std::vector<std::int64_t>>> orders_;
};

}  // namespace pickscore::data
