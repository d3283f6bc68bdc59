// The training recipe (include/pickscore/train/): the learning-rate schedule, the paper's metrics
// and rank correlations, the host communicator, gradient accumulation and two host ranks against
// one rank (exact in double), the sharded optimizer, bf16 with f32 master weights, checkpoints
// (resume gives the same loss sequence step for step; a failure in the middle of a save leaves the
// previous checkpoint valid), the exported Hugging Face model, validation and the metrics file.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "support/files.hpp"
#include "support/train_fixtures.hpp"
#include <pickscore/data/loader.hpp>
#include <pickscore/data/synthetic.hpp>
#include <pickscore/io/checkpoint.hpp>
#include <pickscore/io/json.hpp>
#include <pickscore/train/comm.hpp>
#include <pickscore/train/metrics.hpp>
#include <pickscore/train/schedule.hpp>
#include <pickscore/train/trainer.hpp>

using namespace pickscore;
namespace fs = std::filesystem;

namespace {

template <class E = Error>
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
    test::expect_error_of<E>(f, parts);
}

using test::TempDir;

std::shared_ptr<const io::Tokenizer> tokenizer() {
    static auto tok = std::make_shared<const io::Tokenizer>(
        io::Tokenizer::from_file(fs::path(PICKSCORE_SHARED_DIR) / "data" / "bpe_simple_vocab_16e6.txt.gz"));
    return tok;
}

// A small CLIP for the real tokenizer: 16 px images in 8 px patches, one layer per tower.
model::ClipConfig small_config() {
    model::ClipConfig c;
    c.name = "train-test";
    c.vision = {16, 8, 16, 1, 2, 32};
    c.text = {49408, 12, 16, 1, 2, 32, 49407};
    c.embed_dim = 8;
    return c;
}

using test::loader_options;
using test::train_set;

// Runs fn(rank, comm, loader) for two host ranks on threads of their own, each loading its half
// of every batch of 4.
template <class F>
void two_host_ranks(F fn) {
    auto group = std::make_shared<train::HostGroup>(2);
    std::vector<std::thread> threads;
    for (int r = 0; r < 2; ++r)
        threads.emplace_back([&, r] {
            train::HostCommunicator comm(group, r);
            data::DataLoader loader(train_set(), tokenizer(), loader_options(4, r, 2));
            fn(r, comm, loader);
        });
    for (auto& t : threads) t.join();
}

train::TrainOptions train_options(std::int64_t batch) { return test::train_options(batch, 4); }

template <class T>
std::unique_ptr<model::ClipModel<T>> make_model(std::int64_t micro_batch, std::uint64_t seed = 9) {
    auto m = std::make_unique<model::ClipModel<T>>(small_config(), model::ClipOptions{.batch = micro_batch});
    Rng rng(seed);
    m->init_weights(rng);
    return m;
}

template <class T>
std::vector<double> params_of(model::ClipModel<T>& m) {
    std::vector<double> v;
    for (const T& x : m.flat_parameters()) v.push_back(cast<double>(x));
    return v;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double d = 0;
    for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
    return d;
}

}  // namespace

TEST_CASE("learning-rate schedule: DeepSpeed's WarmupDecayLR with log warmup") {
    const train::LrSchedule s{.peak = 3e-6, .min = 0.0, .warmup = 500, .total = 4000, .warmup_type = train::WarmupType::log};
    CHECK(s.at(0) == 0.0);  // the first update: ln(1) = 0
    CHECK(s.at(1) == doctest::Approx(3e-6 * std::log(2.0) / std::log(500.0)).epsilon(1e-14));
    CHECK(s.at(250) == doctest::Approx(3e-6 * std::log(251.0) / std::log(500.0)).epsilon(1e-14));
    CHECK(s.at(499) == doctest::Approx(3e-6 * std::log(500.0) / std::log(500.0)).epsilon(1e-14));
    CHECK(s.at(500) == doctest::Approx(3e-6).epsilon(1e-14));  // (4000 - 500) / 3500
    CHECK(s.at(2250) == doctest::Approx(1.5e-6).epsilon(1e-14));
    CHECK(s.at(3999) == doctest::Approx(3e-6 / 3500).epsilon(1e-12));
    CHECK(s.at(4000) == 0.0);
    CHECK(s.at(5000) == 0.0);
    for (std::int64_t t = 1; t < 500; ++t) CHECK(s.at(t) > s.at(t - 1));
    for (std::int64_t t = 501; t <= 4000; ++t) CHECK(s.at(t) < s.at(t - 1));
    const train::LrSchedule lin{.peak = 1.0, .min = 0.1, .warmup = 4, .total = 8, .warmup_type = train::WarmupType::linear};
    CHECK(lin.at(0) == doctest::Approx(0.1));
    CHECK(lin.at(2) == doctest::Approx(0.1 + 0.9 * 0.5));
    CHECK(lin.at(6) == doctest::Approx(0.1 + 0.9 * 0.5));
    // warmup is at least 2 steps, as in DeepSpeed (ln 1 would divide by zero).
    const train::LrSchedule w1{.peak = 1.0, .min = 0.0, .warmup = 1, .total = 10, .warmup_type = train::WarmupType::log};
    CHECK(w1.at(1) == doctest::Approx(std::log(2.0) / std::log(2.0)));
    expect_error([&] { (void)s.at(-1); }, {"must be >= 0"});
    expect_error([] { (void)train::parse_warmup_type("cosine"); }, {"cosine"});
}

TEST_CASE("metrics: the paper's tie-aware accuracy, threshold choice, pairwise accuracy, chance") {
    using train::PairScore;
    // Labels first / tie / second / second; |p1 - p0| = 0.625, 0.0625, 0.3125, 0.125 (exact in binary,
    // so no comparison with a threshold sits on a rounding edge).
    const std::vector<PairScore> s = {{0.8125, 0.1875, 1, 0},
                                      {0.46875, 0.53125, 0.5, 0.5},
                                      {0.34375, 0.65625, 0, 1},
                                      {0.5625, 0.4375, 0, 1}};
    CHECK(train::tie_accuracy(s, 0.0) == doctest::Approx((1 + 0.5 + 1 + 0) / 4.0));
    CHECK(train::tie_accuracy(s, 0.1) == doctest::Approx((1 + 1 + 1 + 0) / 4.0));    // example 2 becomes a tie
    CHECK(train::tie_accuracy(s, 0.2) == doctest::Approx((1 + 1 + 1 + 0.5) / 4.0));  // example 4 too
    CHECK(train::tie_accuracy(s, 0.3) == doctest::Approx((1 + 1 + 1 + 0.5) / 4.0));
    CHECK(train::tie_accuracy(s, 0.4) == doctest::Approx((1 + 1 + 0.5 + 0.5) / 4.0));  // and example 3
    CHECK(train::tie_accuracy(s, 1.0) == doctest::Approx((0.5 + 1 + 0.5 + 0.5) / 4.0));
    const train::ThresholdChoice c = train::choose_threshold(s);
    CHECK(c.threshold == 0.2);  // first of the best
    CHECK(c.accuracy == doctest::Approx(0.875));
    CHECK(c.accuracies.size() == 11);
    CHECK(train::pairwise_accuracy(s) == doctest::Approx((1 + 0.5 + 1 + 0) / 4.0));
    // Equal probabilities earn nothing in the pairwise metric, a tie in the protocol.
    const std::vector<PairScore> eq = {{0.5, 0.5, 1, 0}};
    CHECK(train::pairwise_accuracy(eq) == 0.0);
    CHECK(train::tie_accuracy(eq, 0.0) == 0.5);
    // The paper script's random baseline: ties earn t + (1 - t) / 2, the others 1/2.
    CHECK(train::chance_accuracy(s, 0.0) == doctest::Approx(0.5));
    CHECK(train::chance_accuracy(s, 0.4) == doctest::Approx(0.25 * 0.7 + 0.75 * 0.5));
    CHECK(train::label_of(0.5) == train::Preference::tie);
    CHECK(train::label_of(1.0) == train::Preference::first);
    CHECK(train::label_of(0.0) == train::Preference::second);
}

TEST_CASE("rank correlations: Spearman and Kendall tau-b with ties (scipy's values)") {
    // scipy.stats.spearmanr([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) = 0.8207826816681233
    const std::vector<double> x = {1, 2, 3, 4, 5}, y = {5, 6, 7, 8, 7};
    CHECK(train::spearman(x, y) == doctest::Approx(0.8207826816681233).epsilon(1e-12));
    // scipy.stats.kendalltau([12, 2, 1, 12, 2], [1, 4, 7, 1, 0]) = -0.47140452079103173
    const std::vector<double> a = {12, 2, 1, 12, 2}, b = {1, 4, 7, 1, 0};
    CHECK(train::kendall_tau_b(a, b) == doctest::Approx(-0.47140452079103173).epsilon(1e-12));
    // Without ties, tau-b is (C - D) / (n(n-1)/2): one swap in four items gives (5 - 1) / 6.
    const std::vector<double> p = {1, 2, 3, 4}, q = {1, 3, 2, 4};
    CHECK(train::kendall_tau_b(p, q) == doctest::Approx(4.0 / 6.0));
    CHECK(train::spearman(p, p) == doctest::Approx(1.0));
    CHECK(train::average_ranks(a) == std::vector<double>{4.5, 2.5, 1, 4.5, 2.5});
    expect_error([&] { (void)train::spearman(x, p); }, {"5 and 4"});
    const std::vector<double> flat = {1, 1, 1};
    expect_error([&] { (void)train::kendall_tau_b(flat, std::vector<double>{1, 2, 3}); }, {"constant"});
}

TEST_CASE("host communicator: sums, broadcast, gathered ranges, barrier; identical on every rank") {
    constexpr int W = 3;
    auto group = std::make_shared<train::HostGroup>(W);
    std::vector<std::vector<float>> f(W);
    std::vector<std::vector<bf16>> h(W);
    std::vector<std::vector<double>> bc(W), host(W), gathered(W);
    std::vector<std::thread> threads;
    for (int r = 0; r < W; ++r)
        threads.emplace_back([&, r] {
            train::HostCommunicator c(group, r);
            f[std::size_t(r)] = {float(r), 1.0f, 0.1f * float(r), 5.0f, -1.0f};
            c.all_reduce_sum(f[std::size_t(r)].data(), 5, DType::f32);
            h[std::size_t(r)] = {bf16(float(r + 1)), bf16(0.5f)};
            c.all_reduce_sum(h[std::size_t(r)].data(), 2, DType::bf16);
            bc[std::size_t(r)] = {double(r), double(r) * 2};
            c.broadcast(bc[std::size_t(r)].data(), 2, DType::f64, 2);
            host[std::size_t(r)] = {double(r) + 0.25};
            c.all_reduce_sum_host(host[std::size_t(r)].data(), 1);
            const auto off = train::shard_offsets(7, W, 2);
            gathered[std::size_t(r)].assign(7, -1.0);
            for (std::int64_t i = off[std::size_t(r)]; i < off[std::size_t(r) + 1]; ++i)
                gathered[std::size_t(r)][std::size_t(i)] = double(100 * r + i);
            c.all_gather_ranges(gathered[std::size_t(r)].data(), off, DType::f64);
            c.barrier();
        });
    for (auto& t : threads) t.join();
    for (int r = 0; r < W; ++r) {
        CHECK(f[std::size_t(r)] == f[0]);
        CHECK(f[std::size_t(r)][0] == 3.0f);
        CHECK(f[std::size_t(r)][1] == 3.0f);
        CHECK(f[std::size_t(r)][3] == 15.0f);
        CHECK(float(h[std::size_t(r)][0]) == 6.0f);
        CHECK(float(h[std::size_t(r)][1]) == 1.5f);
        CHECK(bc[std::size_t(r)] == std::vector<double>{2, 4});
        CHECK(host[std::size_t(r)][0] == 3.75);
        // shard_offsets(7, 3, 2): pieces of 4 ([0,4), [4,7), [7,7)).
        CHECK(gathered[std::size_t(r)] == std::vector<double>{0, 1, 2, 3, 104, 105, 106});
    }
    CHECK(train::shard_offsets(10, 4, 1) == std::vector<std::int64_t>{0, 3, 6, 9, 10});
    CHECK(train::shard_offsets(5, 2, 16) == std::vector<std::int64_t>{0, 5, 5});
    // A rank that fails releases the others instead of leaving them waiting.
    auto g2 = std::make_shared<train::HostGroup>(2);
    std::thread other([&] {
        train::HostCommunicator c(g2, 1);
        expect_error([&] { c.barrier(); }, {"another rank failed"});
    });
    g2->mark_failed();
    other.join();
}

TEST_CASE("overlapped sums: buckets made from the reported ranges, gaps summed late, the sums equal the blocking ones") {
    constexpr int W = 2;
    constexpr std::int64_t n = 40;
    auto group = std::make_shared<train::HostGroup>(W);
    std::vector<std::vector<float>> buf(W);
    std::vector<train::OverlappedSum::Stats> stats(W);
    std::vector<std::int64_t> started(W);
    std::vector<std::thread> threads;
    for (int r = 0; r < W; ++r)
        threads.emplace_back([&, r] {
            train::HostCommunicator c(group, r);
            auto& b = buf[std::size_t(r)];
            for (std::int64_t i = 0; i < n; ++i) b.push_back(float(i) + 0.5f * float(r));
            train::OverlappedSum sum(c, 8);
            sum.begin(b.data(), n, DType::f32);
            // Descending and touching: one bucket until it reaches 8 elements; then a range that does
            // not touch it closes it; [30, 36) is never reported (summed late by finish).
            sum.ready(24, 30);
            sum.ready(20, 24);  // joins: 10 >= 8, started
            sum.ready(16, 20);
            sum.ready(0, 4);    // does not touch [16, 20): that one is started alone
            sum.ready(4, 10);   // joins above: 10 >= 8, started
            sum.ready(10, 16);
            sum.ready(36, 40);  // [10, 16) started; [36, 40) open until finish
            stats[std::size_t(r)] = sum.finish();
            started[std::size_t(r)] = c.async_started();
            // A blocking call afterwards still meets the other rank in order.
            double one = 1.0;
            c.all_reduce_sum_host(&one, 1);
            CHECK(one == 2.0);
        });
    for (auto& t : threads) t.join();
    for (int r = 0; r < W; ++r) {
        for (std::int64_t i = 0; i < n; ++i) CHECK(buf[std::size_t(r)][std::size_t(i)] == 2.0f * float(i) + 0.5f);
        CHECK(stats[std::size_t(r)].buckets == 5);
        CHECK(stats[std::size_t(r)].late_elements == 6);
        CHECK(started[std::size_t(r)] == 6);  // 5 buckets and the late gap
    }
    // A range reported twice, or outside the buffer, is an error (one rank: nothing to wait for).
    train::LocalCommunicator local;
    std::vector<float> x(8, 1.0f);
    train::OverlappedSum sum(local, 4);
    sum.begin(x.data(), 8, DType::f32);
    expect_error([&] { sum.ready(6, 9); }, {"[6, 9)", "8 elements"});
    sum.ready(0, 4);
    sum.ready(2, 6);
    expect_error([&] { (void)sum.finish(); }, {"reported twice"});
    // A rank whose sums fail reports it at wait_async, and the other rank is released.
    auto g2 = std::make_shared<train::HostGroup>(2);
    std::thread other([&] {
        train::HostCommunicator c(g2, 1);
        float v = 1.0f;
        c.all_reduce_sum_async(&v, 1, DType::f32);
        expect_error([&] { c.wait_async(); }, {"another rank failed"});
    });
    g2->mark_failed();
    other.join();
}

TEST_CASE("backward hooks: the reported ranges tile the gradient buffer once, and hold their final values") {
    model::ClipConfig cfg = small_config();
    cfg.vision.layers = 2;
    cfg.text.layers = 3;
    for (bool recompute : {false, true}) {
        CAPTURE(recompute);
        model::ClipModel<double> m(cfg, model::ClipOptions{.batch = 2, .recompute = recompute});
        Rng rng(4);
        m.init_weights(rng);
        data::DataLoader loader(train_set(), tokenizer(), loader_options(2));
        const data::Batch b = *loader.next();
        Tensor<double, Cpu> pix(Shape{2, 2, 3, 16, 16});
        for (std::int64_t i = 0; i < pix.numel(); ++i) pix[i] = double(b.pixels.data()[i]);
        Tensor<double, Cpu> labels(Shape{2, 2}), weights(Shape{2});
        for (std::int64_t i = 0; i < 4; ++i) labels[i] = double(b.labels[std::size_t(i)]);
        weights[0] = weights[1] = 0.5;
        // Gradients accumulate: start from a first call's, so "final" means final for the sum.
        m.zero_grad();
        (void)m.loss_and_grad(b.ids.view(), pix.view(), labels.view(), weights.view());
        std::vector<std::pair<std::int64_t, std::int64_t>> ranges;
        std::vector<std::vector<double>> snapshots;
        (void)m.loss_and_grad(b.ids.view(), pix.view(), labels.view(), weights.view(),
                              [&](std::int64_t lo, std::int64_t hi) {
                                  ranges.emplace_back(lo, hi);
                                  const auto g = m.flat_gradients();
                                  snapshots.emplace_back(g.data() + lo, g.data() + hi);
                              });
        const auto g = m.flat_gradients();
        // Final: nothing after the report changed the range (the whole gradient is non-trivial).
        double changed = 0, norm = 0;
        for (std::size_t k = 0; k < ranges.size(); ++k)
            for (std::int64_t i = ranges[k].first; i < ranges[k].second; ++i) {
                changed = std::max(changed, std::abs(g[i] - snapshots[k][std::size_t(i - ranges[k].first)]));
                norm += g[i] * g[i];
            }
        CHECK(changed == 0.0);
        CHECK(norm > 1e-6);
        // The first report is logit_scale, the second the vision head; blocks come from the end.
        REQUIRE(ranges.size() >= 4);
        CHECK(ranges[0].first == 0);
        const auto& store = m.store();
        CHECK(ranges[1].first == store.offset(*store.find("vision_model.post_layernorm.weight")));
        CHECK(ranges[1].second == store.end(*store.find("visual_projection.weight")));
        CHECK(ranges[2].first == store.offset(*store.find("vision_model.encoder.layers.1.self_attn.k_proj.weight")));
        // Once each, covering everything.
        std::sort(ranges.begin(), ranges.end());
        std::int64_t at = 0;
        for (const auto& [lo, hi] : ranges) {
            CHECK(lo == at);
            at = hi;
        }
        CHECK(at == g.numel());
    }
}

TEST_CASE("distributed environment: rank and world from the launcher's variables") {
    ::setenv("OMPI_COMM_WORLD_RANK", "3", 1);
    ::setenv("OMPI_COMM_WORLD_SIZE", "8", 1);
    ::setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
    train::DistributedEnv e = train::distributed_env();
    CHECK(e.rank == 3);
    CHECK(e.world == 8);
    CHECK(e.local_rank == 1);
    ::setenv("PICKSCORE_RANK", "0", 1);  // pickscore's own variables win
    ::setenv("PICKSCORE_WORLD_SIZE", "2", 1);
    e = train::distributed_env();
    CHECK(e.world == 2);
    ::setenv("PICKSCORE_RANK", "2", 1);
    expect_error([] { (void)train::distributed_env(); }, {"PICKSCORE_RANK=2", "not below"});
    for (const char* v : {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "PICKSCORE_RANK",
                          "PICKSCORE_WORLD_SIZE"})
        ::unsetenv(v);
    e = train::distributed_env();
    CHECK(e.world == 1);
    CHECK(e.rank == 0);
}

TEST_CASE("gradient accumulation is exact: micro-batches of 2 and 1 equal one batch of 4 (double)") {
    std::vector<std::vector<double>> results;
    std::vector<std::vector<double>> losses;
    for (std::int64_t micro : {4, 2, 1}) {
        auto m = make_model<double>(micro);
        data::DataLoader loader(train_set(), tokenizer(), loader_options(4));
        train::LocalCommunicator comm;
        auto o = train_options(4);
        o.micro_batch = micro;
        train::Trainer<double> t(*m, loader, comm, o);
        std::vector<double> l;
        for (int s = 0; s < 3; ++s) l.push_back(t.step().loss);
        results.push_back(params_of(*m));
        losses.push_back(l);
    }
    // Only the summation order differs: double rounding. AdamW divides by sqrt(v), which lifts the
    // rounding of the smallest gradients, so the bound is 1e-10 — eight orders below the updates
    // (lr 1e-2) that a wrong accumulation would disturb.
    CHECK(max_abs_diff(results[0], results[1]) < 1e-10);
    CHECK(max_abs_diff(results[0], results[2]) < 1e-10);
    for (int s = 0; s < 3; ++s) {
        CHECK(losses[1][std::size_t(s)] == doctest::Approx(losses[0][std::size_t(s)]).epsilon(1e-12));
        CHECK(losses[2][std::size_t(s)] == doctest::Approx(losses[0][std::size_t(s)]).epsilon(1e-12));
    }
    // And the run moved: the update is not trivially zero.
    auto fresh = make_model<double>(4);
    CHECK(max_abs_diff(results[0], params_of(*fresh)) > 1e-3);
}

TEST_CASE("two host ranks with half the batch each make the same updates as one rank (double), sharded or not, "
          "gradients summed during the backward or after it") {
    // One rank, the whole batch of 4.
    auto single = make_model<double>(4);
    std::vector<double> single_loss;
    {
        data::DataLoader loader(train_set(), tokenizer(), loader_options(4));
        train::LocalCommunicator comm;
        train::Trainer<double> t(*single, loader, comm, train_options(4));
        for (int s = 0; s < 3; ++s) single_loss.push_back(t.step().loss);
    }
    std::map<bool, std::vector<double>> blocking_params;
    for (const auto& [shard, overlap] : {std::pair{false, false}, {true, false}, {false, true}, {true, true}}) {
        CAPTURE(shard);
        CAPTURE(overlap);
        std::vector<std::unique_ptr<model::ClipModel<double>>> models;
        for (int r = 0; r < 2; ++r) models.push_back(make_model<double>(2));
        std::vector<std::vector<double>> loss(2);
        std::vector<train::OverlappedSum::Stats> stats(2);
        std::vector<std::int64_t> started(2);
        two_host_ranks([&](int r, train::HostCommunicator& comm, data::DataLoader& loader) {
            auto o = train_options(4);
            o.shard_optimizer = shard;
            o.overlap_communication = overlap;
            o.bucket_elements = 512;  // many buckets for this small model
            train::Trainer<double> t(*models[std::size_t(r)], loader, comm, o);
            CHECK(t.optimizer().sharded() == shard);
            for (int s = 0; s < 3; ++s) loss[std::size_t(r)].push_back(t.step().loss);
            stats[std::size_t(r)] = t.overlap_stats();
            started[std::size_t(r)] = comm.async_started();
        });
        for (int r = 0; r < 2; ++r) {
            // With overlap, each step's gradient went out in several buckets during the backward,
            // every element reported (none summed late); without, none was started that way.
            CHECK(stats[std::size_t(r)].buckets == stats[0].buckets);
            CHECK((overlap ? stats[std::size_t(r)].buckets > 3 : stats[std::size_t(r)].buckets == 0));
            CHECK(stats[std::size_t(r)].late_elements == 0);
            CHECK(started[std::size_t(r)] == (overlap ? 3 * stats[std::size_t(r)].buckets : 0));
        }
        // The sums are per element, so cutting them into buckets does not change a bit: the run with
        // overlap ends exactly where the same run without it did.
        if (!overlap) blocking_params[shard] = params_of(*models[0]);
        else CHECK(params_of(*models[0]) == blocking_params[shard]);
        for (int r = 0; r < 2; ++r) {
            // As for accumulation: summation order only (see above).
            CHECK(max_abs_diff(params_of(*models[std::size_t(r)]), params_of(*single)) < 1e-10);
            for (int s = 0; s < 3; ++s)
                CHECK(loss[std::size_t(r)][std::size_t(s)] ==
                      doctest::Approx(single_loss[std::size_t(s)]).epsilon(1e-12));
        }
    }
}

TEST_CASE("bf16 with f32 master weights: the working copy is the rounding of the master; accumulation in f32") {
    for (std::int64_t micro : {4, 2}) {
        CAPTURE(micro);
        auto m = make_model<bf16>(micro);
        const std::vector<double> before = params_of(*m);
        data::DataLoader loader(train_set(), tokenizer(), loader_options(4));
        train::LocalCommunicator comm;
        auto o = train_options(4);
        o.micro_batch = micro;
        o.schedule.peak = 3e-3;
        train::Trainer<bf16> t(*m, loader, comm, o);
        // The master starts as the working copy, widened exactly.
        {
            const auto master = t.optimizer().master();
            for (std::int64_t i = 0; i < master.numel(); ++i) REQUIRE(double(master[i]) == before[std::size_t(i)]);
        }
        for (int s = 0; s < 4; ++s) {
            const train::StepMetrics sm = t.step();
            CHECK(std::isfinite(sm.loss));
            CHECK(sm.grad_norm > 0);
        }
        const auto master = t.optimizer().master();
        const auto working = m->flat_parameters();
        std::int64_t moved_below_bf16 = 0;
        for (std::int64_t i = 0; i < master.numel(); ++i) {
            REQUIRE(working[i].bits == bf16(master[i]).bits);
            moved_below_bf16 += double(working[i]) == before[std::size_t(i)] && double(master[i]) != before[std::size_t(i)];
        }
        // Some updates are smaller than bf16's spacing: the master keeps them, the copy does not (yet).
        CHECK(moved_below_bf16 > 0);
    }
}

TEST_CASE("bf16 on two host ranks with micro-batches: the f32 accumulator is summed during the backward, "
          "bit for bit as after it") {
    std::vector<std::vector<double>> params;
    for (bool overlap : {false, true}) {
        CAPTURE(overlap);
        std::vector<std::unique_ptr<model::ClipModel<bf16>>> models;
        for (int r = 0; r < 2; ++r) models.push_back(make_model<bf16>(1));
        std::vector<std::int64_t> late(2, -1), buckets(2, -1);
        two_host_ranks([&](int r, train::HostCommunicator& comm, data::DataLoader& loader) {
            auto o = train_options(4);
            o.micro_batch = 1;  // two micro-batches per rank: bf16 gradients go through the f32 accumulator
            o.schedule.peak = 3e-3;
            o.overlap_communication = overlap;
            o.bucket_elements = 256;
            train::Trainer<bf16> t(*models[std::size_t(r)], loader, comm, o);
            for (int s = 0; s < 3; ++s) CHECK(std::isfinite(t.step().loss));
            late[std::size_t(r)] = t.overlap_stats().late_elements;
            buckets[std::size_t(r)] = t.overlap_stats().buckets;
        });
        CHECK(params_of(*models[0]) == params_of(*models[1]));
        CHECK(late[0] == 0);
        CHECK((overlap ? buckets[0] > 3 : buckets[0] == 0));
        params.push_back(params_of(*models[0]));
    }
    CHECK(params[0] == params[1]);
    auto fresh = make_model<bf16>(1);
    CHECK(max_abs_diff(params[0], params_of(*fresh)) > 0);
}

TEST_CASE("checkpoints: an interrupted and resumed run repeats the straight run's losses exactly (f32)") {
    TempDir a("straight"), b("resumed");
    auto run = [&](const fs::path& dir, std::int64_t until, bool resume) {
        auto m = make_model<float>(2);
        data::DataLoader loader(train_set(), tokenizer(), loader_options(4));
        train::LocalCommunicator comm;
        auto o = train_options(4);
        o.micro_batch = 2;
        o.steps = 6;
        o.out_dir = dir;
        o.save_every = 2;
        o.save_final = false;
        o.save_best = false;
        train::Trainer<float> t(*m, loader, comm, o);
        if (resume) REQUIRE(t.resume());
        std::vector<double> losses;
        t.on_step = [&](const train::StepMetrics& s) { losses.push_back(s.loss); };
        t.run(until);
        return std::pair{losses, params_of(*m)};
    };
    const auto [straight, p_straight] = run(a.path, 6, false);
    REQUIRE(straight.size() == 6);
    const auto [first, p_first] = run(b.path, 3, false);  // stops after step 3 (a checkpoint at 2, and at 3)
    REQUIRE(first.size() == 3);
    const auto [second, p_second] = run(b.path, 6, true);
    REQUIRE(second.size() == 3);
    for (int s = 0; s < 3; ++s) CHECK(first[std::size_t(s)] == straight[std::size_t(s)]);
    for (int s = 0; s < 3; ++s) CHECK(second[std::size_t(s)] == straight[std::size_t(s) + 3]);  // bit for bit
    CHECK(p_second == p_straight);
    // The checkpoint names the step, its data position and the RNG state.
    const auto latest = train::latest_checkpoint(b.path);
    REQUIRE(latest.has_value());
    const train::TrainState st = train::read_checkpoint_state(*latest);
    CHECK(st.step == 6);
    CHECK(st.data.size() == 1);
    CHECK(st.data[0].cursor == (6 * 4) % 40);  // 10 batches of 4 per epoch: step 6 ends at record 24
    // keep = 2: only the newest two complete checkpoints remain.
    int dirs = 0;
    for (const auto& e : fs::directory_iterator(b.path / "checkpoints")) dirs += e.is_directory();
    CHECK(dirs == 2);
    // The metrics file has one line per step (6) of the resumed run's folder.
    std::ifstream mf(b.path / "metrics.jsonl");
    int lines = 0;
    for (std::string line; std::getline(mf, line);) {
        const io::Json j = io::json::parse(line);
        CHECK(j.find("loss") != nullptr);
        ++lines;
    }
    CHECK(lines == 6);
}

TEST_CASE("checkpoints: a failure in the middle of a save leaves the previous checkpoint valid") {
    TempDir dir("fail");
    auto m = make_model<float>(4);
    data::DataLoader loader(train_set(), tokenizer(), loader_options(4));
    train::LocalCommunicator comm;
    auto o = train_options(4);
    o.out_dir = dir.path;
    train::Trainer<float> t(*m, loader, comm, o);
    (void)t.step();
    (void)t.step();
    t.save();
    const std::vector<double> at2 = params_of(*m);
    (void)t.step();
    (void)t.step();
    // Fail after 0 bytes, inside the tensor file, inside state.json, and while replacing `latest`.
    const auto ck = *train::latest_checkpoint(dir.path);
    const auto st_size = std::int64_t(fs::file_size(ck / "rank-00000.safetensors"));
    const auto js_size = std::int64_t(fs::file_size(ck / "state.json"));
    for (std::int64_t budget : {std::int64_t(0), std::int64_t(100), st_size - 10, st_size + 50, st_size + js_size + 5}) {
        CAPTURE(budget);
        t.set_checkpoint_options({.keep = 2, .fail_after_bytes = budget});
        CHECK_THROWS_AS(t.save(), IoError);
        const auto latest = train::latest_checkpoint(dir.path);
        REQUIRE(latest.has_value());
        CHECK(latest->filename() == "step-00000002");
        CHECK(train::read_checkpoint_state(*latest).step == 2);
    }
    // Resuming from it restores step 2's weights and position.
    auto m2 = make_model<float>(4, 77);
    data::DataLoader loader2(train_set(), tokenizer(), loader_options(4));
    train::Trainer<float> t2(*m2, loader2, comm, o);
    REQUIRE(t2.resume());
    CHECK(t2.step_count() == 2);
    CHECK(params_of(*m2) == at2);
    CHECK(loader2.position() == data::Position{0, 8, 0});
    // The next successful save clears the leftovers of the failed ones.
    t.set_checkpoint_options({.keep = 2, .fail_after_bytes = -1});
    t.save();
    CHECK(train::latest_checkpoint(dir.path)->filename() == "step-00000004");
    for (const auto& e : fs::directory_iterator(dir.path / "checkpoints"))
        CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
    // A `latest` naming a folder without state is an error, not a silent fresh start.
    std::ofstream(dir.path / "checkpoints" / "latest") << "step-00000099\n";
    expect_error<FormatError>([&] { (void)train::latest_checkpoint(dir.path); }, {"step-00000099", "no state.json"});
}

TEST_CASE("validation, the best and final models in Hugging Face's layout, progress line") {
    TempDir dir("export");
    auto m = make_model<bf16>(4);
    data::DataLoader loader(train_set(), tokenizer(), loader_options(4));
    const data::Dataset val = train_set().slice(0, 10);
    train::LocalCommunicator comm;
    auto o = train_options(4);
    o.out_dir = dir.path;
    o.steps = 3;
    o.eval_every = 2;
    o.eval_on_start = true;
    o.log_every = 1;
    o.eval_batch = 3;
    const fs::path log = dir.path / "progress.txt";
    std::FILE* f = std::fopen(log.c_str(), "w");
    o.progress = f;
    train::Trainer<bf16> t(*m, loader, comm, o, &val, tokenizer());
    t.run();
    std::fclose(f);
    const auto ev = t.last_evaluation();
    REQUIRE(ev.has_value());
    CHECK(ev->count == 10);
    CHECK(ev->scores.size() == 10);
    CHECK(ev->pairwise >= 0.0);
    CHECK(ev->pairwise <= 1.0);
    for (const auto& s : ev->scores) CHECK(s.p0 + s.p1 == doctest::Approx(1.0));
    CHECK(t.best_metric() >= 0.0);
    // The final export holds the f32 master weights under Hugging Face names.
    auto back = io::load_clip_model<float>(dir.path / "final");
    CHECK(back->config().vision.width == 16);
    const auto master = t.optimizer().master();  // in the bf16 model's flat layout
    const auto& store = m->store();
    for (std::size_t i = 0; i < store.size(); ++i) {
        const auto loaded = back->store().value(store.name(i));
        for (std::int64_t k = 0; k < loaded.numel(); ++k) REQUIRE(loaded[k] == master[store.offset(i) + k]);
    }
    CHECK(fs::exists(dir.path / "best" / "model.safetensors"));
    CHECK(fs::exists(dir.path / "best" / "config.json"));
    // The progress lines and the validation lines.
    std::ifstream in(log);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(text.find("step 1/3 | loss ") != std::string::npos);
    CHECK(text.find("| acc ") != std::string::npos);
    CHECK(text.find("ex/s | ETA 00:00:") != std::string::npos);
    CHECK(text.find("validation (validation_unique, 10 examples) at step 0") != std::string::npos);
    CHECK(text.find("at step 2") != std::string::npos);
    std::ifstream mf(dir.path / "metrics.jsonl");
    int steps = 0, evals = 0;
    for (std::string line; std::getline(mf, line);) {
        const io::Json j = io::json::parse(line);
        if (j.find("split")) {
            ++evals;
            CHECK(j["count"].as_int64() == 10);
        } else {
            ++steps;
            CHECK(j["lr"].as_double() >= 0.0);
        }
    }
    CHECK(steps == 3);
    CHECK(evals == 2);
}

TEST_CASE("trainer: configuration errors") {
    auto m = make_model<float>(2);
    train::LocalCommunicator comm;
    data::DataLoader loader(train_set(), tokenizer(), loader_options(4));
    auto o = train_options(8);
    expect_error([&] { train::Trainer<float> t(*m, loader, comm, o); }, {"loader's batch (4)", "step's batch (8)"});
    o = train_options(4);
    expect_error([&] { train::Trainer<float> t(*m, loader, comm, o); }, {"micro-batch 4", "planned batch 2"});
}
