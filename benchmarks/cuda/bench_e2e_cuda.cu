// bench_e2e_cuda — end-to-end CLIP inference on the GPU, as pickscore::Scorer runs it: ViT-H/14 at
// its real size (986 M parameters, random weights) in bf16 on Tensor<bf16, Cuda>, preprocessed
// pixels on the device in, L2-normalised embeddings out (ClipModel::encode_images / encode_text on
// an inference-only model whose scratch arena is planned for batch 256).
//
//   BM_e2e_images/bf16/batch:B        B = 1, 32, 256 images (flops = ClipConfig::vision_flops() · B)
//   BM_e2e_images_graph/bf16/batch:1  the same call captured once in a CUDA graph and replayed
//                                     (the batch-1 latency goal: under 2 ms per image)
//   BM_e2e_text/bf16/batch:B          B = 1, 32, 256 prompts of 77 tokens (ids copied from the host
//                                     each call, as the Scorer does)
//   BM_ceiling/copy, BM_ceiling/gemm_bf16   the device's two ceilings (cuda_bench.cuh)
// Counters: "flops" (per second; divide by BM_ceiling/gemm_bf16 for the fraction of the bf16 matmul
// peak: the goal is >= 60% at batch 256), "items" (images or prompts per second), and the memory:
// "weights_GiB", "scratch_GiB" (the planned inference arena) and "peak_GiB" (the allocator's peak
// bytes in use during the benchmark, weights and arena included).
// The PyTorch baseline (eager, SDPA, bf16, same shapes): tools/bench_torch.py --device cuda
// --batches 1,32,256 --cuda-json <this program's --benchmark_out JSON> prints the ratios.
//
//   bench_e2e_cuda [google benchmark flags]        (exit 77 without a CUDA device)
// Timing, repetitions and reporting: cuda_bench.cuh.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <pickscore/model.hpp>

#include "cuda_bench.cuh"

namespace {

using namespace pickscore;
using namespace pickscore::bench;

constexpr std::int64_t kMaxBatch = 256;

model::ClipModel<bf16, Cuda>& the_model() {
    static std::unique_ptr<model::ClipModel<bf16, Cuda>> m = [] {
        auto p = std::make_unique<model::ClipModel<bf16, Cuda>>(
            model::ClipConfig::vit_h14(), model::ClipOptions{.batch = kMaxBatch / 2, .training = false});
        // Random weights drawn on the device: U(-0.03, 0.03) everywhere (the speed does not depend
        // on the values; LayerNorm weights this small keep the activations finite).
        fill_uniform<bf16>(p->flat_parameters(), -0.03f, 0.03f, 2024);
        cu::current().synchronize();
        return p;
    }();
    return *m;
}

void memory_counters(benchmark::State& state, model::ClipModel<bf16, Cuda>& m) {
    constexpr double gib = 1024.0 * 1024.0 * 1024.0;
    state.counters["weights_GiB"] = double(m.flat_parameters().bytes()) / gib;
    state.counters["scratch_GiB"] = double(m.memory_plan().scratch.bytes()) / gib;
    state.counters["peak_GiB"] = double(cu::current().allocator().stats().peak_bytes_in_use) / gib;
}

void bm_images(benchmark::State& state, std::int64_t B) {
    guarded(state, [&] {
        auto& m = the_model();
        const model::ClipConfig& c = m.config();
        const std::int64_t S = c.vision.image_size;
        Tensor<bf16, Cuda> px(Shape{B, 3, S, S}), out(Shape{B, c.embed_dim});
        fill_uniform<bf16>(px, -2.0f, 2.0f, 7);
        Work w;
        w.flops = c.vision_flops() * double(B);
        run_timed(state, w, "", [&](std::int64_t) { m.encode_images(out, px); });
        state.counters["items"] = benchmark::Counter(double(B), benchmark::Counter::kIsIterationInvariantRate);
        memory_counters(state, m);
    });
}

// Batch 1 replayed from a CUDA graph: the launches of the ~400 kernels of a forward cost more than
// their work at batch 1; a graph submits them at once.
void bm_images_graph(benchmark::State& state) {
    guarded(state, [&] {
        auto& m = the_model();
        const model::ClipConfig& c = m.config();
        const std::int64_t S = c.vision.image_size;
        Tensor<bf16, Cuda> px(Shape{1, 3, S, S}), out(Shape{1, c.embed_dim});
        fill_uniform<bf16>(px, -2.0f, 2.0f, 8);
        const cudaStream_t s = cu::current().stream();
        // Warm-up outside the capture: library handles, cuBLASLt heuristics and allocator blocks.
        for (int i = 0; i < 2; ++i) m.encode_images(out, px);
        cu::current().synchronize();
        cudaGraph_t graph = nullptr;
        cudaGraphExec_t exec = nullptr;
        cu::check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
        try {
            m.encode_images(out, px);
        } catch (...) {
            (void)cudaStreamEndCapture(s, &graph);
            if (graph) (void)cudaGraphDestroy(graph);
            throw;
        }
        cu::check(cudaStreamEndCapture(s, &graph), "cudaStreamEndCapture (an op of encode_images is not capturable)");
        cu::check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
        Work w;
        w.flops = c.vision_flops();
        run_timed(state, w, "BM_e2e_images/bf16/batch:1",
                  [&](std::int64_t) { cu::check(cudaGraphLaunch(exec, s), "cudaGraphLaunch"); });
        state.counters["items"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
        memory_counters(state, m);
        (void)cudaGraphExecDestroy(exec);
        (void)cudaGraphDestroy(graph);
    });
}

void bm_text(benchmark::State& state, std::int64_t B) {
    guarded(state, [&] {
        auto& m = the_model();
        const model::ClipConfig& c = m.config();
        const std::int64_t L = c.text.context_length;
        Tensor<std::int32_t, Cpu> ids(Shape{B, L});
        Rng rng(11);
        for (std::int64_t b = 0; b < B; ++b)
            for (std::int64_t t = 0; t < L; ++t)
                ids.at(b, t) = t == 0       ? c.text.eos_token_id - 1
                               : t == L - 1 ? c.text.eos_token_id
                                            : std::int32_t(1 + rng.below(std::uint64_t(c.text.eos_token_id - 2)));
        Tensor<bf16, Cuda> out(Shape{B, c.embed_dim});
        Work w;
        w.flops = c.text_flops() * double(B);
        run_timed(state, w, "", [&](std::int64_t) { m.encode_text(out, ids); });
        state.counters["items"] = benchmark::Counter(double(B), benchmark::Counter::kIsIterationInvariantRate);
        memory_counters(state, m);
    });
}

void register_all() {
    register_ceilings();
    for (std::int64_t b : {1, 32, 256}) {
        add("BM_e2e_images/bf16/batch:" + std::to_string(b), bm_images, b);
        if (b == 1) add("BM_e2e_images_graph/bf16/batch:1", bm_images_graph);
    }
    for (std::int64_t b : {1, 32, 256}) add("BM_e2e_text/bf16/batch:" + std::to_string(b), bm_text, b);
}

}  // namespace

int main(int argc, char** argv) { return main_with(argc, argv, register_all); }
