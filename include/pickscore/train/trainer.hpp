// pickscore/train/trainer.hpp — PickScore's fine-tuning recipe around ClipModel: data-parallel
// steps with gradient accumulation, mixed precision, clipping, the schedule, validation with the
// paper's metrics, checkpoints that resume exactly, progress and metrics.
// pickscore-requires: pickscore::io
//
//   model::ClipModel<bf16, Cuda> model(cfg, {.batch = micro_batch, .recompute = true});
//   data::DataLoader loader(train_set, tok, {.batch = 128, .rank = r, .world = W});
//   train::Trainer<bf16, Cuda> t(model, loader, comm, options, &val_set, tok);
//   t.resume();                                   // if options.out_dir holds a checkpoint
//   t.run();                                      // to options.steps, validating and saving on the way
//
// One step (Trainer::step):
//   1. the loader hands this rank its share of the global batch (batch / world examples);
//   2. loss weights w_i = (1/n_i) / Σ_j (1/n_j) over the whole global batch: the ranks sum their
//      local Σ 1/n_j (one host all-reduce), so every example gets its weight in the global batch;
//   3. the share runs in micro-batches of micro_batch examples; each adds its gradient (the loss
//      of its examples under those global weights) — the sum over micro-batches and ranks is the
//      gradient of the full batch's loss, exactly (up to summation order): accumulation is exact
//      for this loss because the weights are normalised once over the full batch. bf16 gradients
//      are summed in an f32 buffer when more than one is summed (train/optimizer.hpp);
//   4. the gradient is summed over ranks in buckets of about bucket_elements: with
//      overlap_communication (the default), during the last micro-batch's backward, each bucket as
//      soon as the backward has finished its layers (train/overlap.hpp; on NCCL the sums run on a
//      stream of their own beside the backward); otherwise after the backward, bucket by bucket.
//      Then it is scaled by gradient_sign (1; -1 only for the learning test's broken run);
//   5. AdamW with clipping at max_grad_norm and lr = schedule.at(step) (train/schedule.hpp).
// Metrics per step: the global loss (Σ over ranks, the weights already sum to 1), PickScore's
// pairwise accuracy of the step's examples, lr, gradient norm, examples/s.
// Validation (every eval_every steps, and at step 0 with eval_on_start) scores a data set with the
// inference encoders and reports pairwise accuracy (PickScore's model-selection metric: the best
// one is exported to out_dir/best) and the tie-aware accuracy at the threshold chosen on it.
// Checkpoints every save_every steps (train/checkpoint.hpp); the final model goes to out_dir/final
// in Hugging Face's layout (io::save_clip_checkpoint).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../core/tensor.hpp"
#include "../data/loader.hpp"
#include "../io/checkpoint.hpp"
#include "../io/json.hpp"
#include "../io/tokenizer.hpp"
#include "../model/clip.hpp"
#include "../ops/elementwise.hpp"
#include "../ops/optim.hpp"
#include "checkpoint.hpp"
#include "comm.hpp"
#include "device.hpp"
#include "metrics.hpp"
#include "optimizer.hpp"
#include "overlap.hpp"
#include "schedule.hpp"

namespace pickscore::train {

struct TrainOptions {
    std::int64_t batch = 128;         // examples per optimizer step, over all ranks
    std::int64_t micro_batch = 0;     // examples per forward/backward (0: the rank's whole share)
    std::int64_t steps = 4000;        // optimizer steps of the run
    LrSchedule schedule{};            // peak 3e-6, log warmup 500, linear to 0 at 4000
    ops::AdamWConfig adam{};          // betas (0.9, 0.999), eps 1e-8, weight decay 0.3 (lr: schedule)
    double max_grad_norm = 1.0;
    bool shard_optimizer = false;     // ZeRO-1: optimizer state split over the ranks
    std::int64_t bucket_elements = std::int64_t(1) << 24;  // gradient all-reduce bucket
    bool overlap_communication = true;  // sum gradient buckets over ranks during the backward
    double gradient_sign = 1.0;       // -1: the deliberately wrong gradient of the learning test

    std::int64_t eval_every = 100;    // 0: never
    bool eval_on_start = true;
    std::int64_t eval_batch = 32;     // prompts per evaluation batch (per rank)
    std::int64_t save_every = 100;    // 0: never (a final checkpoint is still written at the end)
    bool save_best = true;            // export the best validated model to out_dir/best
    bool save_final = true;           // export the final model to out_dir/final
    CheckpointOptions checkpoint{};
    std::filesystem::path out_dir;    // empty: nothing is written (no checkpoints, no metrics)

    std::int64_t log_every = 1;       // progress line every N steps (rank 0); 0: never
    std::FILE* progress = stdout;
    std::uint64_t seed = 42;          // the trainer's RNG (saved and restored with the checkpoint)
    std::string config_json;          // recorded in checkpoints
};

struct StepMetrics {
    std::int64_t step = 0;       // updates done after this step
    double loss = 0;
    double accuracy = 0;         // pairwise accuracy of the step's examples (all ranks)
    double lr = 0;
    double grad_norm = 0;
    std::int64_t examples = 0;   // examples that entered the step (all ranks)
    std::int64_t skipped_records = 0;  // corrupt records skipped by this rank so far
    double seconds = 0;
    bool skipped_update = false;  // non-finite gradient
};

struct EvalResult {
    std::string name;
    std::int64_t count = 0;
    double pairwise = 0;           // PickScore's training-time validation metric
    ThresholdChoice choice;        // the tie-aware accuracy at each threshold, and the best one
    std::vector<PairScore> scores; // per example (rank 0 holds all of them)
};

// Probabilities of every example of `data` under the model (inference encoders), and the labels.
// Every rank scores its part; the scores of all ranks are summed into every rank's result.
template <class T, class D>
std::vector<PairScore> score_dataset(model::ClipModel<T, D>& model, const data::Dataset& data,
                                     std::shared_ptr<const io::Tokenizer> tok, data::LoaderOptions lo,
                                     Communicator& comm) {
    const std::int64_t n = data.size();
    std::vector<double> acc(std::size_t(4 * n), 0.0);
    lo.shuffle = false;
    lo.loop = false;
    lo.drop_last = false;
    lo.rank = comm.rank();
    lo.world = comm.world();
    lo.batch = std::max<std::int64_t>(lo.batch, 1) * comm.world();
    lo.max_corrupt = -1;
    const std::int64_t E = model.config().embed_dim, S = model.config().vision.image_size;
    Tensor<T, Cpu> ls_host(Shape{1});
    download<T, D>(ls_host.view(), model.logit_scale());
    const double scale = std::exp(cast<double>(ls_host[0]));
    if (n > 0) {
        data::DataLoader loader(data, tok, lo);
        while (auto b = loader.next()) {
            const std::int64_t N = b->size();
            if (N == 0) continue;
            Tensor<T, D> txt(Shape{N, E}), img(Shape{2 * N, E}), pix(Shape{2 * N, 3, S, S});
            upload<T, D, float>(pix.view(), b->pixels.view().reshape(Shape{2 * N, 3, S, S}));
            model.encode_text(txt.view(), b->ids);
            model.encode_images(img.view(), pix.cview());
            Tensor<T, Cpu> th(Shape{N, E}), ih(Shape{2 * N, E});
            download<T, D>(th.view(), txt.cview());
            download<T, D>(ih.view(), img.cview());
            for (std::int64_t i = 0; i < N; ++i) {
                double s[2] = {0, 0};
                for (int k = 0; k < 2; ++k)
                    for (std::int64_t e = 0; e < E; ++e)
                        s[k] += cast<double>(th[i * E + e]) * cast<double>(ih[(2 * i + k) * E + e]);
                const double d = scale * (s[1] - s[0]);
                const double p0 = 1.0 / (1.0 + std::exp(d));  // softmax of the pair
                const std::size_t at = std::size_t(4 * b->index[std::size_t(i)]);
                acc[at] = p0;
                acc[at + 1] = 1.0 - p0;
                acc[at + 2] = b->labels[2 * i];
                acc[at + 3] = b->labels[2 * i + 1];
            }
        }
    }
    comm.all_reduce_sum_host(acc.data(), std::int64_t(acc.size()));
    std::vector<PairScore> out(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i)
        out[std::size_t(i)] = {acc[std::size_t(4 * i)], acc[std::size_t(4 * i + 1)], acc[std::size_t(4 * i + 2)],
                               acc[std::size_t(4 * i + 3)]};
    return out;
}

inline EvalResult summarize(std::string name, std::vector<PairScore> scores) {
    EvalResult r;
    r.name = std::move(name);
    r.count = std::int64_t(scores.size());
    r.pairwise = pairwise_accuracy(scores);
    r.choice = choose_threshold(scores);
    r.scores = std::move(scores);
    return r;
}

template <class T, class D = Cpu>
class Trainer {
public:
    using Acc = acc_t<T>;
    using Opt = AdamW<T, D>;
    using M = typename Opt::M;

    Trainer(model::ClipModel<T, D>& model, data::DataLoader& loader, Communicator& comm, TrainOptions options,
            const data::Dataset* validation = nullptr, std::shared_ptr<const io::Tokenizer> tokenizer = nullptr)
        : model_(model), loader_(loader), comm_(comm), opt_(std::move(options)), val_(validation),
          tok_(std::move(tokenizer)), rng_(opt_.seed),
          adamw_(model.flat_parameters(), opt_.adam, opt_.max_grad_norm, comm, opt_.shard_optimizer),
          overlapped_(comm, opt_.bucket_elements) {
        const data::LoaderOptions& lo = loader.options();
        require(lo.batch == opt_.batch, "Trainer: the loader's batch (", lo.batch, ") is not the step's batch (",
                opt_.batch, ")");
        require(lo.world == comm.world() && lo.rank == comm.rank(), "Trainer: the loader is for rank ", lo.rank,
                " of ", lo.world, ", the communicator says ", comm.rank(), " of ", comm.world());
        share_ = opt_.batch / comm.world();
        micro_ = opt_.micro_batch > 0 ? std::min(opt_.micro_batch, share_) : share_;
        require(micro_ <= model.options().batch, "Trainer: micro-batch ", micro_,
                " is larger than the model's planned batch ", model.options().batch);
        require(!val_ || tok_, "Trainer: validation needs the tokenizer");
        opt_.schedule.validate();
        // bf16 gradients from more than one micro-batch or rank are summed in f32.
        const bool several = share_ > micro_ || comm.world() > 1;
        if constexpr (std::is_same_v<T, bf16>) {
            if (several) {
                grad_acc_ = Tensor<float, D>(model.flat_parameters().shape());
                ops::fill<float, D>(grad_acc_.view(), 0.0);
            }
        }
        const std::int64_t S = model.config().vision.image_size;
        pix_ = Tensor<T, D>(Shape{micro_, 2, 3, S, S});
        labels_ = Tensor<Acc, D>(Shape{micro_, 2});
        weights_ = Tensor<Acc, D>(Shape{micro_});
        eval_lo_ = lo;
        eval_lo_.batch = opt_.eval_batch;
        started_ = std::chrono::steady_clock::now();
    }

    model::ClipModel<T, D>& model() { return model_; }
    Opt& optimizer() { return adamw_; }
    // How the last step's gradient sum was cut (overlap_communication with several ranks only).
    const OverlappedSum::Stats& overlap_stats() const { return overlapped_.stats(); }
    std::int64_t step_count() const { return adamw_.steps_done() + skipped_updates_; }
    const TrainOptions& options() const { return opt_; }
    void set_checkpoint_options(const CheckpointOptions& c) { opt_.checkpoint = c; }
    double best_metric() const { return best_metric_; }
    Rng& rng() { return rng_; }

    // Continues from out_dir's latest checkpoint; false when there is none.
    bool resume() {
        if (opt_.out_dir.empty()) return false;
        const auto dir = latest_checkpoint(opt_.out_dir);
        if (!dir) return false;
        resume_from(*dir);
        return true;
    }

    void resume_from(const std::filesystem::path& dir) {
        const TrainState st = read_checkpoint_state(dir);
        const std::int64_t flat = model_.flat_parameters().numel();
        require<FormatError>(st.dtype == std::string(dtype_name(dtype_of<T>)) && st.flat_size == flat, "checkpoint '",
                             dir.string(), "' is of a ", st.dtype, " model with ", st.flat_size,
                             " flat parameters; this run trains a ", dtype_name(dtype_of<T>), " model with ", flat,
                             " (same model and dtype needed to resume)");
        require<FormatError>(std::int64_t(st.data.size()) == comm_.world() || st.data.size() == 1, "checkpoint '",
                             dir.string(), "' holds data positions for ", st.data.size(), " ranks, this run has ",
                             comm_.world());
        Tensor<M, Cpu> master(Shape{adamw_.shard_end() - adamw_.shard_begin()}), m(master.shape()), v(master.shape());
        load_checkpoint_shard<M>(dir, st, {master.view(), m.view(), v.view()}, adamw_.shard_begin(), comm_);
        upload<M, D, M>(adamw_.master(), master.cview());
        upload<M, D, M>(adamw_.moment1(), m.cview());
        upload<M, D, M>(adamw_.moment2(), v.cview());
        adamw_.sync_params_from_master();
        adamw_.set_steps_done(st.step);
        skipped_updates_ = 0;
        rng_.set_state(st.rng);
        best_metric_ = st.best_metric;
        best_step_ = st.best_step;
        data::Position p = st.data[st.data.size() == 1 ? 0 : std::size_t(comm_.rank())];
        loader_.seek(p);
        log_line("resumed from " + dir.string() + " at step " + std::to_string(st.step));
    }

    // One optimizer step.
    StepMetrics step() {
        const auto t0 = std::chrono::steady_clock::now();
        std::optional<data::Batch> batch = loader_.next();
        require(batch.has_value(), "Trainer::step: the training loader ran out of data (it must loop)");
        const data::Batch& b = *batch;
        const std::int64_t N = b.size();
        const std::int64_t S = model_.config().vision.image_size;

        // Global weight normaliser and example count.
        double sums[2] = {0, double(N)};
        for (std::int64_t i = 0; i < N; ++i) sums[0] += 1.0 / double(b.counts[i]);
        comm_.all_reduce_sum_host(sums, 2);
        const double inv_total = sums[0];

        model_.zero_grad();
        if (!grad_acc_.empty()) ops::fill<float, D>(grad_acc_.view(), 0.0);
        // With overlap, the last micro-batch's backward starts the sums (into the f32 accumulator
        // when there is one: each finished range is added to it first).
        const bool overlap = opt_.overlap_communication && comm_.world() > 1;
        const bool to_acc = !grad_acc_.empty();
        model::GradientReady ready;
        if (overlap) {
            ready = [&](std::int64_t lo, std::int64_t hi) {
                if constexpr (std::is_same_v<T, bf16>) {
                    if (to_acc)
                        accumulate_f32<T, D>(grad_acc_.view().slice(lo, hi), model_.flat_gradients().slice(lo, hi).cview());
                }
                overlapped_.ready(lo, hi);
            };
        }
        double loss = 0, correct = 0;
        Tensor<Acc, Cpu> lab(Shape{micro_, 2}), w(Shape{micro_}), probs(Shape{micro_, 2});
        for (std::int64_t a = 0; a < N; a += micro_) {
            const std::int64_t e = std::min(N, a + micro_), n = e - a;
            const bool last = e == N;
            for (std::int64_t i = 0; i < n; ++i) {
                lab[2 * i] = Acc(b.labels[2 * (a + i)]);
                lab[2 * i + 1] = Acc(b.labels[2 * (a + i) + 1]);
                w[i] = Acc((1.0 / double(b.counts[a + i])) / inv_total);
            }
            const auto pix = pix_.view().slice(0, n);
            upload<T, D, float>(pix, b.pixels.view().slice(a, e));
            upload<Acc, D, Acc>(labels_.view().slice(0, n), lab.view().slice(0, n));
            upload<Acc, D, Acc>(weights_.view().slice(0, n), w.view().slice(0, n));
            const Tensor<std::int32_t, Cpu> ids = trimmed_ids(b.ids.view().slice(a, e));
            if (overlap && last) {
                if (to_acc) overlapped_.begin(grad_acc_.data(), grad_acc_.numel(), DType::f32);
                else overlapped_.begin(model_.flat_gradients().data(), model_.flat_gradients().numel(), dtype_of<T>);
            }
            loss += model_.loss_and_grad(ids, pix.cview(), labels_.view().slice(0, n).cview(),
                                         weights_.view().slice(0, n).cview(),
                                         overlap && last ? ready : model::GradientReady{});
            download<Acc, D>(probs.view().slice(0, n), model_.outputs().probs.cview());
            for (std::int64_t i = 0; i < n; ++i) {
                const double p0 = probs[2 * i], p1 = probs[2 * i + 1];
                correct += (p0 > p1 ? double(lab[2 * i]) : 0.0) + (p0 < p1 ? double(lab[2 * i + 1]) : 0.0);
            }
            if constexpr (std::is_same_v<T, bf16>) {
                if (to_acc && !(overlap && last)) {
                    accumulate_f32<T, D>(grad_acc_.view(), model_.flat_gradients().cview());
                    model_.zero_grad();
                }
            }
        }
        (void)S;
        if (overlap) overlapped_.finish();
        StepMetrics m;
        const std::int64_t t = step_count();
        m.lr = opt_.schedule.at(t);
        typename Opt::StepResult r;
        bool done = false;
        if constexpr (std::is_same_v<T, bf16>) {
            if (!grad_acc_.empty()) {
                reduce_gradient<float>(grad_acc_.view());
                r = adamw_.step(grad_acc_.view(), m.lr);
                done = true;
            }
        }
        if (!done) {
            reduce_gradient<T>(model_.flat_gradients());
            r = adamw_.step(model_.flat_gradients(), m.lr);
        }
        if (r.skipped) ++skipped_updates_;
        double tot[2] = {loss, correct};
        comm_.all_reduce_sum_host(tot, 2);
        m.step = step_count();
        m.loss = tot[0];
        m.examples = std::int64_t(sums[1]);
        m.accuracy = m.examples > 0 ? tot[1] / double(m.examples) : 0.0;
        m.grad_norm = r.grad_norm;
        m.skipped_update = r.skipped;
        m.skipped_records = loader_.skipped();
        m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return m;
    }

    // Scores a data set (all ranks take part).
    EvalResult evaluate(const data::Dataset& d, const std::string& name) {
        require(tok_ != nullptr, "Trainer::evaluate: no tokenizer");
        return summarize(name, score_dataset(model_, d, tok_, eval_lo_, comm_));
    }

    // Runs to options.steps (or `until`): steps, progress, metrics, validation, checkpoints.
    void run(std::int64_t until = -1) {
        const std::int64_t end = until < 0 ? opt_.steps : std::min(until, opt_.steps);
        if (step_count() == 0 && val_ && opt_.eval_on_start && opt_.eval_every > 0) validate();
        double ema = 0;
        while (step_count() < end) {
            const StepMetrics m = step();
            ema = ema == 0 ? m.seconds : 0.9 * ema + 0.1 * m.seconds;
            if (on_step) on_step(m);
            if (opt_.log_every > 0 && (m.step % opt_.log_every == 0 || m.step == end)) progress_line(m, ema, end);
            write_metrics(m);
            if (val_ && opt_.eval_every > 0 && m.step % opt_.eval_every == 0) validate();
            if (opt_.save_every > 0 && m.step % opt_.save_every == 0 && m.step < end) save();
        }
        if (!opt_.out_dir.empty()) {
            save();
            if (opt_.save_final) export_model(opt_.out_dir / "final");
        }
    }

    // Validates on the validation set; exports a new best model.
    EvalResult validate() {
        EvalResult r = evaluate(*val_, val_name);
        last_eval_ = r;
        const bool better = r.pairwise > best_metric_;
        if (better) {
            best_metric_ = r.pairwise;
            best_step_ = step_count();
            if (opt_.save_best && !opt_.out_dir.empty()) export_model(opt_.out_dir / "best");
        }
        if (comm_.rank() == 0) {
            char buf[256];
            std::snprintf(buf, sizeof buf,
                          "validation (%s, %lld examples) at step %lld: pairwise accuracy %.4f, tie-aware accuracy "
                          "%.4f at threshold %.1f%s",
                          r.name.c_str(), static_cast<long long>(r.count), static_cast<long long>(step_count()),
                          r.pairwise, r.choice.accuracy, r.choice.threshold, better ? " (best)" : "");
            log_line(buf);
            if (!opt_.out_dir.empty()) {
                io::Json j = io::Json::Object{};
                j.set("step", io::Json(step_count()));
                j.set("split", io::Json(r.name));
                j.set("count", io::Json(r.count));
                j.set("pairwise_accuracy", io::Json(r.pairwise));
                j.set("accuracy", io::Json(r.choice.accuracy));
                j.set("threshold", io::Json(r.choice.threshold));
                append_metrics(j);
            }
        }
        return r;
    }

    // A checkpoint of the current state (all ranks call it).
    std::filesystem::path save() {
        require(!opt_.out_dir.empty(), "Trainer::save: no out_dir");
        TrainState st;
        st.step = step_count();
        // Every rank's data position (they differ only in the skipped counts).
        const int W = comm_.world();
        std::vector<double> pos(std::size_t(3 * W), 0.0);
        const data::Position me = loader_.position();
        pos[std::size_t(3 * comm_.rank())] = double(me.epoch);
        pos[std::size_t(3 * comm_.rank() + 1)] = double(me.cursor);
        pos[std::size_t(3 * comm_.rank() + 2)] = double(me.skipped);
        comm_.all_reduce_sum_host(pos.data(), std::int64_t(pos.size()));
        for (int r = 0; r < W; ++r)
            st.data.push_back({std::int64_t(pos[std::size_t(3 * r)]), std::int64_t(pos[std::size_t(3 * r + 1)]),
                               std::int64_t(pos[std::size_t(3 * r + 2)])});
        st.rng = rng_.state();
        st.best_metric = best_metric_;
        st.best_step = best_step_;
        st.world = W;
        st.sharded = adamw_.sharded();
        st.dtype = std::string(dtype_name(dtype_of<T>));
        st.flat_size = model_.flat_parameters().numel();
        st.config = opt_.config_json;
        const Shape s{adamw_.shard_end() - adamw_.shard_begin()};
        Tensor<M, Cpu> master(s), m(s), v(s);
        download<M, D>(master.view(), adamw_.master().cview());
        download<M, D>(m.view(), adamw_.moment1().cview());
        download<M, D>(v.view(), adamw_.moment2().cview());
        const bool writes = adamw_.sharded() || comm_.rank() == 0;
        return save_checkpoint<M>(opt_.out_dir, st, {master.view(), m.view(), v.view()}, writes, comm_, opt_.checkpoint);
    }

    // The full-precision weights (master) in Hugging Face's layout, written by rank 0.
    void export_model(const std::filesystem::path& dir) {
        const std::int64_t n = model_.flat_parameters().numel();
        Tensor<M, Cpu> host(Shape{n});
        if constexpr (Opt::separate_master) {
            Tensor<M, D> full(Shape{n});
            ops::fill<M, D>(full.view(), 0.0);
            device_copy<M, D>(full.view().slice(adamw_.shard_begin(), adamw_.shard_end()), adamw_.master().cview());
            if (adamw_.sharded()) comm_.all_gather_ranges(full.data(), adamw_.shard_offsets_all(), dtype_of<M>);
            download<M, D>(host.view(), full.cview());
        } else {
            download<M, D>(host.view(), model_.flat_parameters().cview());
        }
        if (comm_.rank() == 0) {
            const auto& store = model_.store();
            std::vector<model::NamedTensor<M, Cpu>> named;
            for (std::size_t i = 0; i < store.size(); ++i)
                named.push_back({store.name(i), TensorView<M, Cpu>(host.data() + store.offset(i), store.shape(i))});
            io::save_clip_checkpoint(dir, model_.config(), named);
        }
        comm_.barrier();
    }

    const std::optional<EvalResult>& last_evaluation() const { return last_eval_; }

    std::function<void(const StepMetrics&)> on_step;  // called after every step (tests, tools)
    std::string val_name = "validation_unique";

private:
    // The ids cut after the last first-end-of-text position of the rows (the causal text tower
    // cannot see what follows it, so the result is the same and the text pass is shorter).
    Tensor<std::int32_t, Cpu> trimmed_ids(TensorView<std::int32_t, Cpu> ids) const {
        const std::int64_t n = ids.size(0), L = ids.size(1);
        const std::int32_t eos = model_.config().text.eos_token_id;
        std::int64_t keep = 1;
        for (std::int64_t i = 0; i < n; ++i) {
            std::int64_t at = L - 1;
            for (std::int64_t t = 0; t < L; ++t)
                if (ids[i * L + t] == eos) {
                    at = t;
                    break;
                }
            keep = std::max(keep, at + 1);
        }
        Tensor<std::int32_t, Cpu> out(Shape{n, keep});
        for (std::int64_t i = 0; i < n; ++i)
            for (std::int64_t t = 0; t < keep; ++t) out[i * keep + t] = ids[i * L + t];
        return out;
    }

    template <class G>
    void reduce_gradient(TensorView<G, D> g) {
        if (comm_.world() > 1 && !opt_.overlap_communication) {
            const std::int64_t n = g.numel(), bucket = std::max<std::int64_t>(1, opt_.bucket_elements);
            for (std::int64_t i = 0; i < n; i += bucket)
                comm_.all_reduce_sum(g.data() + i, std::min(bucket, n - i), dtype_of<G>);
        }
        if (opt_.gradient_sign != 1.0) ops::scale_inplace<G, D>(g, opt_.gradient_sign);
    }

    void progress_line(const StepMetrics& m, double ema, std::int64_t end) {
        if (comm_.rank() != 0 || !opt_.progress) return;
        const double eta = ema * double(end - m.step);
        const long long e = static_cast<long long>(eta);
        std::fprintf(opt_.progress,
                     "step %lld/%lld | loss %.4f | acc %.3f | lr %.3g | grad norm %.3g | %.1f ex/s | ETA "
                     "%02lld:%02lld:%02lld%s\n",
                     static_cast<long long>(m.step), static_cast<long long>(end), m.loss, m.accuracy, m.lr,
                     m.grad_norm, m.seconds > 0 ? double(m.examples) / m.seconds : 0.0, e / 3600, e / 60 % 60, e % 60,
                     m.skipped_update ? " | update skipped (non-finite gradient)" : "");
        std::fflush(opt_.progress);
    }

    void write_metrics(const StepMetrics& m) {
        if (comm_.rank() != 0 || opt_.out_dir.empty()) return;
        io::Json j = io::Json::Object{};
        j.set("step", io::Json(m.step));
        // A diverged step's loss is written as null (JSON has no NaN), so the run's record survives it.
        j.set("loss", std::isfinite(m.loss) ? io::Json(m.loss) : io::Json(nullptr));
        j.set("accuracy", io::Json(m.accuracy));
        j.set("lr", io::Json(m.lr));
        j.set("grad_norm", io::Json(std::isfinite(m.grad_norm) ? m.grad_norm : -1.0));
        j.set("examples", io::Json(m.examples));
        j.set("seconds", io::Json(m.seconds));
        j.set("examples_per_s", io::Json(m.seconds > 0 ? double(m.examples) / m.seconds : 0.0));
        j.set("skipped_records", io::Json(m.skipped_records));
        j.set("time", io::Json(std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count()));
        append_metrics(j);
    }

    void append_metrics(const io::Json& j) {
        std::filesystem::create_directories(opt_.out_dir);
        std::ofstream f(opt_.out_dir / "metrics.jsonl", std::ios::app);
        f << io::json::dump(j) << "\n";
    }

    void log_line(const std::string& s) {
        if (comm_.rank() != 0 || !opt_.progress) return;
        std::fprintf(opt_.progress, "%s\n", s.c_str());
        std::fflush(opt_.progress);
    }

    model::ClipModel<T, D>& model_;
    data::DataLoader& loader_;
    Communicator& comm_;
    TrainOptions opt_;
    const data::Dataset* val_;
    std::shared_ptr<const io::Tokenizer> tok_;
    Rng rng_;
    Opt adamw_;
    OverlappedSum overlapped_;
    std::int64_t share_ = 0, micro_ = 0;
    std::int64_t skipped_updates_ = 0;
    Tensor<float, D> grad_acc_;
    Tensor<T, D> pix_;
    Tensor<Acc, D> labels_, weights_;
    data::LoaderOptions eval_lo_;
    double best_metric_ = -1.0;
    std::int64_t best_step_ = -1;
    std::optional<EvalResult> last_eval_;
    std::chrono::steady_clock::time_point started_;
};

}  // namespace pickscore::train
