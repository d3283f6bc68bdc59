// bench_train_cuda — one optimizer step of PickScore's fine-tuning recipe on the GPU, at the paper's
// batch and size: ViT-H/14 (986 M parameters, random weights) in bf16 on Tensor<bf16, Cuda>, 128
// prompts with 2 images each (256 images) per step, per-block activation recomputation on
// (ClipOptions::recompute), gradient accumulation over micro-batches, AdamW with f32 master weights
// and moments, clipping at norm 1 (issue 7: the goal is at most 0.6 s per step — 4000 steps in
// under 40 minutes — within 80 GB on one H100).
//
//   BM_train_step/bf16/micro:M/tokens:L   M = 32, 64, 128 prompts per forward/backward at L = 77
//                                         tokens (the worst case), and M = 64 at L = 32 (the length
//                                         Trainer trims typical Pick-a-Pic captions to: it cuts the
//                                         ids after the batch's last end-of-text)
//   BM_train_trainer_step/bf16/micro:64/workers:12   (only where pickscore::io is built, see below)
//   BM_ceiling/copy, BM_ceiling/gemm_bf16   the device's two ceilings (cuda_bench.cuh)
//
// One step of BM_train_step makes the calls train::Trainer::step makes (train/trainer.hpp), on
// inputs uploaded once beforehand (pixels [128, 2, 3, 224, 224] bf16, labels and weights f32 on the
// device, ids [128, L] on the host), so it measures the compute: zero_grad; per micro-batch
// loss_and_grad, the download of the pair probabilities (the trainer's accuracy), and — when there
// is more than one micro-batch — train::accumulate_f32 of the bf16 gradient into the f32 buffer
// and zero_grad; then train::AdamW::step (global norm, clipping, f32 master update, bf16 working
// copy) from that buffer (or straight from the bf16 gradient at M = 128, as the trainer does).
//
// Counters:
//   flops          model FLOPs per second: 3 x the forward FLOPs of the step (ClipConfig::
//                  vision_flops() x 256 + text_flops(L) x 128 — the usual forward + backward count).
//                  The recomputed forward (another ~1x forward) is NOT counted, so this is MFU in
//                  the usual sense, not hardware utilisation. The label "vs BM_ceiling/gemm_bf16"
//                  makes the summary print flops / the measured cuBLASLt bf16 peak (the MFU against
//                  what this device's GEMMs reach); "mfu_spec" is flops / the data-sheet dense
//                  bf16 peak where the device is known (H100 SXM / H200 989.4, H100 PCIe 756,
//                  H100 NVL 835, A100 312 TFLOP/s), absent otherwise
//   s_per_step, step_min_s, step_max_s   mean, fastest and slowest timed step
//   run_minutes    s_per_step x 4000 / 60 (the paper's run; the goal is under 40)
//   goal_max_seconds   0.6: tools/gpu_check_summary.py marks the row ok / MISS against it
//   peak_GiB       the peak bytes in use of the caching allocator during the benchmark (weights,
//                  gradients, f32 accumulator, master weights and moments, arenas, buffers): each
//                  benchmark runs in a cuda::Context of its own, so the peak is its own
//   device_used_GiB    total - free device memory after the timed steps (the driver's view: adds
//                  the CUDA context, library handles and the allocator's cache)
//   plan_GiB       what the step was planned to need before it started (model.memory_plan():
//                  activations_GiB + scratch_GiB, plus 2 + 2 bytes per parameter for the bf16
//                  weights and gradients, 12 for master and moments, 4 for the accumulator);
//                  a variant whose plan exceeds the free device memory is skipped with an error
//   loss, grad_norm    of the last step (sanity: finite)
//
// BM_train_trainer_step runs train::Trainer::step itself with a data::DataLoader (12 workers,
// prefetch 2) over 128 synthetic examples (data/synthetic.hpp) drawn at 512 x 512 px and PNG-encoded,
// so each step decodes and resizes 256 images as a Pick-a-Pic step does; the tokenizer is byte-level
// (no merges: 514 ids, so a caption of ~30 characters gives ~36 ids, near a real trimmed caption)
// and the model's end-of-text id is set to the tokenizer's. Its extra counter loader_s_per_batch
// is the time a fresh loader alone takes per batch (4 batches after the first): below s_per_step,
// loading keeps up with the GPU. Built only where the pickscore::io target exists (zlib, libpng,
// libjpeg, libwebp; the trainer part is bench_train_trainer.cpp, compiled by the C++ compiler);
// tools/gpu_check.sh configures with PICKSCORE_IO=OFF, so it does not run there.
//
// Repetitions: every benchmark here runs once (Repetitions(1)) with PICKSCORE_TRAIN_STEPS timed
// steps (default 3) after one warm-up step: one ViT-H step takes about a second, and the program
// (model creation included) should finish in 60-90 s on an H100. The reported time is the mean of
// the timed steps (manual time: CUDA events around each step; a step ends with host waits anyway).
// The PyTorch baseline of the same step: tools/bench_torch.py --train --device cuda --cuda-json
// <this program's --benchmark_out JSON> (tools/gpu_check.sh runs it after the benchmarks).
//
//   bench_train_cuda [google benchmark flags]        (exit 77 without a CUDA device)
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include <pickscore/model.hpp>
#include <pickscore/train/comm.hpp>
#include <pickscore/train/device.hpp>
#include <pickscore/train/optimizer.hpp>

#include "cuda_bench.cuh"
#if PICKSCORE_BENCH_TRAINER
#include "bench_train_trainer.hpp"
#endif

namespace {

using namespace pickscore;
using namespace pickscore::bench;

using Model = model::ClipModel<bf16, Cuda>;

constexpr std::int64_t kBatch = 128;        // prompts per optimizer step (PickScore's batch)
constexpr double kGoalSeconds = 0.6;        // issue 7: seconds per step
constexpr double kPaperSteps = 4000;        // PickScore's run
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

int timed_steps() { return std::max(1, int(env_double("PICKSCORE_TRAIN_STEPS", 3))); }

// The data-sheet dense bf16 tensor-core peak of the device, FLOP/s (0: unknown).
double spec_bf16_peak() {
    const std::string name = device_properties().name;
    auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
    if (has("H200")) return 989.4e12;
    if (has("H100") && has("PCIe")) return 756e12;
    if (has("H100") && has("NVL")) return 835e12;
    if (has("H100")) return 989.4e12;
    if (has("A100")) return 312e12;
    return 0;
}

// Model FLOPs of one step: 3 x forward (recomputation not counted).
double step_model_flops(const model::ClipConfig& c, std::int64_t tokens) {
    return 3.0 * (2.0 * double(kBatch) * c.vision_flops() + double(kBatch) * c.text_flops(tokens));
}

// The device memory a step at micro-batch M is planned to need, and the check that it fits.
struct Plan {
    double activations = 0, scratch = 0, total = 0;  // bytes
};

Plan plan_step(const model::ClipConfig& c, std::int64_t micro) {
    const model::MemoryPlan mp = Model::plan_memory(c, model::ClipOptions{.batch = micro, .training = true,
                                                                           .recompute = true});
    const double n = double(c.num_parameters());
    const bool accumulate = micro < kBatch;
    Plan p;
    p.activations = double(mp.activations.bytes());
    p.scratch = double(mp.scratch.bytes());
    // bf16 weights + bf16 gradients, f32 master + 2 moments, the f32 accumulator, accumulate_f32's
    // 16 MiB chunk buffer, the 32 MiB cuBLASLt workspace.
    p.total = p.activations + p.scratch + n * (2 + 2 + 12 + (accumulate ? 4 : 0)) + double(48 << 20);
    return p;
}

// Skips the benchmark (false) when the plan does not fit in the free device memory (after the
// default context's cache went back to the driver).
bool fits(benchmark::State& state, const Plan& p) {
    cu::default_context().allocator().trim();
    std::size_t free = 0, total = 0;
    cu::check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
    const double margin = double(std::size_t(512) << 20);  // CUDA context, library handles, fragmentation
    if (p.total + margin > double(free)) {
        state.SkipWithError(("does not fit: the step is planned to need " + std::to_string(p.total / kGiB) +
                             " GiB, " + std::to_string(double(free) / kGiB) + " GiB of " +
                             std::to_string(double(total) / kGiB) + " GiB are free")
                                .c_str());
        return false;
    }
    return true;
}

double device_used_bytes() {
    std::size_t free = 0, total = 0;
    cu::check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
    return double(total - free);
}

// A model with random weights drawn on the device: U(-0.03, 0.03) everywhere, as bench_e2e_cuda
// (the speed does not depend on the values; LayerNorm weights this small keep activations finite).
std::unique_ptr<Model> make_model(const model::ClipConfig& c, std::int64_t micro) {
    auto m = std::make_unique<Model>(c, model::ClipOptions{.batch = micro, .training = true, .recompute = true});
    fill_uniform<bf16>(m->flat_parameters(), -0.03f, 0.03f, 2024);
    return m;
}

// Times `step` (one optimizer step; returns the loss and the gradient norm): one warm-up step, then
// the benchmark's iterations (one step each), and sets the counters shared by both benchmarks.
template <class Step>
void time_steps(benchmark::State& state, cu::Context& ctx, double model_flops, const Plan& plan, Step&& step) {
    const cudaStream_t stream = ctx.stream();
    Events ev;
    std::pair<double, double> last = step();  // warm-up: cuBLASLt heuristics, first touch, gradient buffer
    double lo = 1e30, hi = 0;
    for (auto _ : state) {
        ev.start(stream);
        last = step();
        const double s = ev.stop(stream);
        lo = std::min(lo, s);
        hi = std::max(hi, s);
        state.SetIterationTime(s);
    }
    ctx.synchronize();
    const double n = double(state.iterations());
    state.counters["flops"] = benchmark::Counter(model_flops, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["s_per_step"] = benchmark::Counter(n, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    state.counters["run_minutes"] =
        benchmark::Counter(n * 60.0 / kPaperSteps, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    state.counters["step_min_s"] = lo;
    state.counters["step_max_s"] = hi;
    state.counters["goal_max_seconds"] = kGoalSeconds;
    if (const double peak = spec_bf16_peak(); peak > 0)
        state.counters["mfu_spec"] =
            benchmark::Counter(model_flops / peak, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["peak_GiB"] = double(ctx.allocator().stats().peak_bytes_in_use) / kGiB;
    state.counters["device_used_GiB"] = device_used_bytes() / kGiB;
    state.counters["plan_GiB"] = plan.total / kGiB;
    state.counters["activations_GiB"] = plan.activations / kGiB;
    state.counters["scratch_GiB"] = plan.scratch / kGiB;
    state.counters["loss"] = last.first;
    state.counters["grad_norm"] = last.second;
    state.SetLabel("vs BM_ceiling/gemm_bf16");
}

// ---- BM_train_step: the step's calls on pre-uploaded inputs --------------------------------------
void bm_train_step(benchmark::State& state, std::int64_t micro, std::int64_t tokens) {
    guarded(state, [&] {
        const model::ClipConfig c = model::ClipConfig::vit_h14();
        const Plan plan = plan_step(c, micro);
        if (!fits(state, plan)) return;
        // A context of its own: its allocator's peak is this benchmark's, and everything it cached
        // goes back to the driver when the benchmark ends.
        cu::Context ctx;
        cu::ContextGuard use(ctx);
        std::unique_ptr<Model> m = make_model(c, micro);
        train::LocalCommunicator comm;
        train::AdamW<bf16, Cuda> adamw(m->flat_parameters(), ops::AdamWConfig{}, /*max_grad_norm=*/1.0, comm);
        Tensor<float, Cuda> acc;
        if (micro < kBatch) acc = Tensor<float, Cuda>(m->flat_parameters().shape());

        // The batch: pixels on the device; ids on the host (start-of-text, random ids, end-of-text
        // last); labels cycling [1,0], [0,1], [0.5,0.5]; weights 1/128 (one example per prompt).
        const std::int64_t S = c.vision.image_size, L = tokens;
        Tensor<bf16, Cuda> pixels(Shape{kBatch, 2, 3, S, S});
        fill_uniform<bf16>(pixels, -2.0f, 2.0f, 7);
        Tensor<std::int32_t, Cpu> ids(Shape{kBatch, L});
        Tensor<float, Cpu> labels_h(Shape{kBatch, 2}), weights_h(Shape{kBatch});
        Rng rng(11);
        const std::int32_t eos = c.text.eos_token_id;
        for (std::int64_t b = 0; b < kBatch; ++b) {
            for (std::int64_t t = 0; t < L; ++t)
                ids.at(b, t) = t == 0 ? eos - 1 : t == L - 1 ? eos : std::int32_t(1 + rng.below(std::uint64_t(eos - 2)));
            const float y0 = b % 3 == 0 ? 1.0f : b % 3 == 1 ? 0.0f : 0.5f;
            labels_h.at(b, 0) = y0;
            labels_h.at(b, 1) = 1.0f - y0;
            weights_h[b] = 1.0f / float(kBatch);
        }
        Tensor<float, Cuda> labels(labels_h.shape()), weights(weights_h.shape());
        train::upload<float, Cuda, float>(labels.view(), labels_h.cview());
        train::upload<float, Cuda, float>(weights.view(), weights_h.cview());
        Tensor<float, Cpu> probs(Shape{micro, 2});
        const double lr = 3e-6;

        auto step = [&]() -> std::pair<double, double> {
            m->zero_grad();
            if (!acc.empty()) ops::fill<float, Cuda>(acc.view(), 0.0);
            double loss = 0;
            for (std::int64_t a = 0; a < kBatch; a += micro) {
                const std::int64_t e = std::min(kBatch, a + micro), n = e - a;
                loss += m->loss_and_grad(ids.cview().slice(a, e), pixels.cview().slice(a, e),
                                         labels.cview().slice(a, e), weights.cview().slice(a, e));
                train::download<float, Cuda>(probs.view().slice(0, n), m->outputs().probs.cview());
                if (!acc.empty()) {
                    train::accumulate_f32<bf16, Cuda>(acc.view(), m->flat_gradients().cview());
                    m->zero_grad();
                }
            }
            const auto r = acc.empty() ? adamw.step(m->flat_gradients(), lr) : adamw.step(acc.view(), lr);
            return {loss, r.grad_norm};
        };
        time_steps(state, ctx, step_model_flops(c, tokens), plan, step);
    });
}

#if PICKSCORE_BENCH_TRAINER
// ---- BM_train_trainer_step: train::Trainer::step with the data loader (bench_train_trainer.cpp) ---
void bm_trainer_step(benchmark::State& state, std::int64_t micro, int workers) {
    guarded(state, [&] {
        TrainerBench rig(kBatch, /*image_size=*/512, workers);
        model::ClipConfig c = model::ClipConfig::vit_h14();
        c.text.eos_token_id = rig.eos_id();
        const Plan plan = plan_step(c, micro);
        if (!fits(state, plan)) return;
        cu::Context ctx;
        cu::ContextGuard use(ctx);
        std::unique_ptr<Model> m = make_model(c, micro);
        rig.start(*m, micro);
        // FLOPs at the longest caption's length: an upper bound of what the trimmed batches run.
        time_steps(state, ctx, step_model_flops(c, rig.max_tokens()), plan, [&] { return rig.step(); });
        state.counters["loader_s_per_batch"] = rig.loader_s_per_batch();
        state.counters["tokens"] = double(rig.max_tokens());
        // Compared with the pre-uploaded step at the nearest text length (the rates are model FLOP/s).
        state.SetLabel("vs BM_train_step/bf16/micro:" + std::to_string(micro) + "/tokens:32");
        rig.stop();  // the trainer's buffers go back while this benchmark's context is current
    });
}
#endif

benchmark::internal::Benchmark* add_step(const std::string& name, auto fn, auto... args) {
    return benchmark::RegisterBenchmark(name.c_str(), fn, args...)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(timed_steps())
        ->Repetitions(1);
}

void register_all() {
    register_ceilings();
    for (std::int64_t micro : {32, 64, 128})
        add_step("BM_train_step/bf16/micro:" + std::to_string(micro) + "/tokens:77", bm_train_step, micro,
                 std::int64_t(77));
    add_step("BM_train_step/bf16/micro:64/tokens:32", bm_train_step, std::int64_t(64), std::int64_t(32));
#if PICKSCORE_BENCH_TRAINER
    add_step("BM_train_trainer_step/bf16/micro:64/workers:12", bm_trainer_step, std::int64_t(64), 12);
#endif
}

}  // namespace

int main(int argc, char** argv) { return main_with(argc, argv, register_all); }
