// The CLIP model: configurations and their parameter counts, the parameter store in Hugging Face
// names, the forward against a straightforward reference written here, every parameter gradient
// against finite differences (double, tiny config), recomputation, the text tower's early stop and
// first-end-of-text pooling, gradient accumulation, the memory plan, f32/bf16 against f64, the
// errors, and ViT-H/14 at its real size. Also the two small ops the model added (select_token,
// fill).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <numbers>
#include <pickscore/model.hpp>
#include <pickscore/ops/elementwise.hpp>
#include <pickscore/ops/embedding.hpp>
#include <pickscore/ops/loss.hpp>
#include <string>
#include <vector>

#include "support/gradcheck.hpp"

using namespace pickscore;
using namespace pickscore::test;
using model::ClipConfig;
using model::ClipModel;
using model::ClipOptions;
using ops::Activation;

namespace {

using Ids = Tensor<std::int32_t, Cpu>;

template <class E, class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    return "(no exception thrown)";
}

void check_mentions(const std::string& msg, std::initializer_list<const char*> parts) {
    for (const char* p : parts)
        CHECK_MESSAGE(msg.find(p) != std::string::npos, "'" << msg << "' does not mention " << p);
}

// Token ids [N, L]: random ids below eos, the end-of-text token at eos_at[b], and after it
// `after` (a padding id, or -1 for more random ids).
Ids make_ids(const ClipConfig& cfg, std::int64_t L, const std::vector<int>& eos_at, Rng& rng, int after = 0) {
    const std::int64_t N = std::int64_t(eos_at.size());
    Ids ids(Shape{N, L});
    for (std::int64_t b = 0; b < N; ++b)
        for (std::int64_t t = 0; t < L; ++t) {
            std::int32_t id = std::int32_t(rng.below(std::uint64_t(cfg.text.eos_token_id)));
            if (t == eos_at[std::size_t(b)]) id = cfg.text.eos_token_id;
            if (t > eos_at[std::size_t(b)] && after >= 0) id = after;
            ids.at(b, t) = id;
        }
    return ids;
}

// A tiny double model with every parameter perturbed away from its initial value (biases and
// LayerNorm parameters non-trivial) and a moderate logit_scale (probabilities away from 0 and 1).
void randomize(ClipModel<double>& m, Rng& rng) {
    m.init_weights(rng);
    for (auto& p : m.parameters())
        for (double& x : p.view) x += rng.normal(0.0, 0.1);
    m.logit_scale()[0] = 1.5;
}

// Labels: a win, a loss, a tie, repeating; weights from unequal per-example counts.
struct Batch {
    Ids ids;
    T64 pixels, labels, weights;
};
Batch make_batch(const ClipConfig& cfg, std::int64_t N, Rng& rng, std::int64_t L = -1) {
    if (L < 0) L = cfg.text.context_length;
    std::vector<int> eos_at;
    for (std::int64_t b = 0; b < N; ++b) eos_at.push_back(int((3 + 2 * b) % L));
    Batch batch;
    batch.ids = make_ids(cfg, L, eos_at, rng);
    const std::int64_t S = cfg.vision.image_size;
    batch.pixels = randn(Shape{N, 2, 3, S, S}, rng);
    batch.labels = T64(Shape{N, 2});
    const double y0[3] = {1.0, 0.0, 0.5};
    for (std::int64_t b = 0; b < N; ++b) {
        batch.labels.at(b, 0) = y0[b % 3];
        batch.labels.at(b, 1) = 1.0 - y0[b % 3];
    }
    T64 counts(Shape{N});
    for (std::int64_t b = 0; b < N; ++b) counts[b] = double(1 + b % 3);
    batch.weights = T64(Shape{N});
    ops::preference_weights<double>(batch.weights, counts);
    return batch;
}

// ---- a straightforward reference forward, written from the definitions --------------------------

using Vec = std::vector<double>;

struct Reference {
    const ClipModel<double>& m;

    C64 p(const std::string& name) const { return m.store().value(name); }

    // y[r, :] = W x[r, :] + b for rows r; W [out, in].
    Vec linear(const Vec& x, std::int64_t rows, const std::string& name, bool bias = true) const {
        const C64 W = p(name + ".weight");
        const std::int64_t out = W.size(0), in = W.size(1);
        Vec y(std::size_t(rows * out));
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t o = 0; o < out; ++o) {
                double s = bias ? p(name + ".bias")[o] : 0.0;
                for (std::int64_t i = 0; i < in; ++i) s += W[o * in + i] * x[std::size_t(r * in + i)];
                y[std::size_t(r * out + o)] = s;
            }
        return y;
    }
    Vec layernorm(const Vec& x, std::int64_t rows, const std::string& name) const {
        const C64 w = p(name + ".weight"), b = p(name + ".bias");
        const std::int64_t C = w.numel();
        Vec y(x.size());
        for (std::int64_t r = 0; r < rows; ++r) {
            double mu = 0, var = 0;
            for (std::int64_t c = 0; c < C; ++c) mu += x[std::size_t(r * C + c)] / double(C);
            for (std::int64_t c = 0; c < C; ++c) var += std::pow(x[std::size_t(r * C + c)] - mu, 2) / double(C);
            for (std::int64_t c = 0; c < C; ++c)
                y[std::size_t(r * C + c)] =
                    (x[std::size_t(r * C + c)] - mu) / std::sqrt(var + m.config().layer_norm_eps) * w[c] + b[c];
        }
        return y;
    }
    double act(double x) const {
        if (m.config().activation == Activation::quick_gelu) return x / (1.0 + std::exp(-1.702 * x));
        return 0.5 * x * (1.0 + std::erf(x / std::numbers::sqrt2));
    }
    // One sequence x [T, C] through a pre-LN block.
    Vec block(Vec x, std::int64_t T, std::int64_t C, std::int64_t H, bool causal, const std::string& pre) const {
        const std::int64_t Dh = C / H;
        const Vec h = layernorm(x, T, pre + ".layer_norm1");
        const Vec q = linear(h, T, pre + ".self_attn.q_proj"), k = linear(h, T, pre + ".self_attn.k_proj"),
                  v = linear(h, T, pre + ".self_attn.v_proj");
        Vec a(std::size_t(T * C), 0.0);
        for (std::int64_t hd = 0; hd < H; ++hd)
            for (std::int64_t i = 0; i < T; ++i) {
                const std::int64_t n = causal ? i + 1 : T;
                Vec s(static_cast<std::size_t>(n), 0.0);
                double mx = -1e300, z = 0;
                for (std::int64_t j = 0; j < n; ++j) {
                    double d = 0;
                    for (std::int64_t e = 0; e < Dh; ++e)
                        d += q[std::size_t(i * C + hd * Dh + e)] * k[std::size_t(j * C + hd * Dh + e)];
                    s[std::size_t(j)] = d / std::sqrt(double(Dh));
                    mx = std::max(mx, s[std::size_t(j)]);
                }
                for (double& sj : s) z += (sj = std::exp(sj - mx));
                for (std::int64_t j = 0; j < n; ++j)
                    for (std::int64_t e = 0; e < Dh; ++e)
                        a[std::size_t(i * C + hd * Dh + e)] += s[std::size_t(j)] / z * v[std::size_t(j * C + hd * Dh + e)];
            }
        const Vec o = linear(a, T, pre + ".self_attn.out_proj");
        for (std::size_t i = 0; i < x.size(); ++i) x[i] += o[i];
        Vec f = linear(layernorm(x, T, pre + ".layer_norm2"), T, pre + ".mlp.fc1");
        for (double& e : f) e = act(e);
        const Vec y = linear(f, T, pre + ".mlp.fc2");
        for (std::size_t i = 0; i < x.size(); ++i) x[i] += y[i];
        return x;
    }
    static Vec normalize(Vec x) {
        double n = 0;
        for (double e : x) n += e * e;
        for (double& e : x) e /= std::sqrt(n);
        return x;
    }
    // The normalised embedding of image [3, S, S] (a view into a pixel tensor).
    Vec image(C64 img) const {
        const auto& v = m.config().vision;
        const std::int64_t C = v.width, P = v.patch_size, G = v.grid(), S = v.image_size, T = v.tokens();
        const C64 W = p("vision_model.embeddings.patch_embedding.weight"),
                  cls = p("vision_model.embeddings.class_embedding"),
                  pos = p("vision_model.embeddings.position_embedding.weight");
        Vec x(std::size_t(T * C));
        for (std::int64_t c = 0; c < C; ++c) x[std::size_t(c)] = cls[c] + pos[c];
        for (std::int64_t gy = 0; gy < G; ++gy)
            for (std::int64_t gx = 0; gx < G; ++gx)
                for (std::int64_t o = 0; o < C; ++o) {
                    double s = 0;  // the convolution, kernel = stride = P, no bias
                    for (std::int64_t ch = 0; ch < 3; ++ch)
                        for (std::int64_t i = 0; i < P; ++i)
                            for (std::int64_t j = 0; j < P; ++j)
                                s += W[((o * 3 + ch) * P + i) * P + j] * img[(ch * S + gy * P + i) * S + gx * P + j];
                    const std::int64_t t = 1 + gy * G + gx;
                    x[std::size_t(t * C + o)] = s + pos[t * C + o];
                }
        x = layernorm(x, T, "vision_model.pre_layrnorm");
        for (std::int64_t l = 0; l < v.layers; ++l)
            x = block(x, T, C, v.heads, false, "vision_model.encoder.layers." + std::to_string(l));
        const Vec pooled = layernorm(Vec(x.begin(), x.begin() + C), 1, "vision_model.post_layernorm");
        return normalize(linear(pooled, 1, "visual_projection", false));
    }
    // The normalised embedding of one row of ids (the whole row runs; pooled at the first eos).
    Vec text(const std::int32_t* ids, std::int64_t L) const {
        const auto& t = m.config().text;
        const std::int64_t C = t.width;
        const C64 tok = p("text_model.embeddings.token_embedding.weight"),
                  pos = p("text_model.embeddings.position_embedding.weight");
        Vec x(std::size_t(L * C));
        std::int64_t eos = -1;
        for (std::int64_t i = 0; i < L; ++i) {
            if (eos < 0 && ids[i] == t.eos_token_id) eos = i;
            for (std::int64_t c = 0; c < C; ++c) x[std::size_t(i * C + c)] = tok[ids[i] * C + c] + pos[i * C + c];
        }
        REQUIRE(eos >= 0);
        for (std::int64_t l = 0; l < t.layers; ++l)
            x = block(x, L, C, t.heads, true, "text_model.encoder.layers." + std::to_string(l));
        const Vec pooled = layernorm(Vec(x.begin() + eos * C, x.begin() + (eos + 1) * C), 1, "text_model.final_layer_norm");
        return normalize(linear(pooled, 1, "text_projection", false));
    }
    double loss(const Batch& b) const {
        const std::int64_t N = b.ids.size(0), L = b.ids.size(1);
        const double scale = std::exp(m.logit_scale()[0]);
        double total = 0;
        for (std::int64_t i = 0; i < N; ++i) {
            const Vec t = text(b.ids.data() + i * L, L);
            double s[2];
            for (int k = 0; k < 2; ++k) {
                const Vec im = image(b.pixels.view().select(i).select(k));
                double d = 0;
                for (std::size_t e = 0; e < t.size(); ++e) d += t[e] * im[e];
                s[k] = scale * d;
            }
            const double mx = std::max(s[0], s[1]), lse = mx + std::log(std::exp(s[0] - mx) + std::exp(s[1] - mx));
            double kl = 0;
            for (int k = 0; k < 2; ++k) {
                const double y = b.labels.at(i, k);
                if (y > 0) kl += y * (std::log(y) - (s[k] - lse));
            }
            total += b.weights[i] * kl;
        }
        return total;
    }
};

double max_abs_diff(C64 a, const Vec& b) {
    REQUIRE(std::size_t(a.numel()) == b.size());
    double d = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) d = std::max(d, std::abs(a[i] - b[std::size_t(i)]));
    return d;
}

template <class A, class B>
bool identical(const TensorView<A, Cpu>& a, const TensorView<B, Cpu>& b) {
    return a.shape() == b.shape() && std::equal(a.begin(), a.end(), b.begin());
}

// |a - b| / |b| over all tensors of two lists together (the lists of two models' gradients).
template <class A>
double relative_error(const std::vector<model::NamedTensor<A, Cpu>>& a,
                      const std::vector<model::NamedTensor<double, Cpu>>& b) {
    REQUIRE(a.size() == b.size());
    double num = 0, den = 0;
    for (std::size_t t = 0; t < a.size(); ++t) {
        REQUIRE(a[t].view.shape() == b[t].view.shape());
        for (std::int64_t i = 0; i < b[t].view.numel(); ++i) {
            num += std::pow(cast<double>(a[t].view[i]) - b[t].view[i], 2);
            den += b[t].view[i] * b[t].view[i];
        }
    }
    return std::sqrt(num / den);
}

}  // namespace

// ---- configurations --------------------------------------------------------------------------------

TEST_CASE("ClipConfig presets: parameter counts and FLOPs") {
    struct Expect {
        ClipConfig cfg;
        std::int64_t vision, text, total;
        Activation act;
    };
    // Totals published for these architectures (open_clip's model profile, HF model cards):
    // 151.28 M, 149.62 M, 427.62 M, 986.11 M, 2539.57 M; the tower counts are the exact sums.
    const Expect cases[] = {
        {ClipConfig::vit_b32(), 87'849'216, 63'428'096, 151'277'313, Activation::quick_gelu},
        {ClipConfig::vit_b16(), 86'192'640, 63'428'096, 149'620'737, Activation::quick_gelu},
        {ClipConfig::vit_l14(), 303'966'208, 123'650'304, 427'616'513, Activation::quick_gelu},
        {ClipConfig::vit_h14(), 632'076'800, 354'032'640, 986'109'441, Activation::gelu_erf},
        {ClipConfig::vit_bigg14(), 1'844'907'264, 694'659'840, 2'539'567'105, Activation::gelu_erf},
    };
    for (const auto& c : cases) {
        CAPTURE(c.cfg.name);
        CHECK_NOTHROW(c.cfg.validate());
        CHECK(c.cfg.vision_parameters() == c.vision);
        CHECK(c.cfg.text_parameters() == c.text);
        CHECK(c.cfg.num_parameters() == c.total);
        CHECK(c.cfg.activation == c.act);
        CHECK(c.cfg.text.eos_token_id == 49407);
    }
    // ViT-H/14 in the reference's units: 632.08 M + 354.03 M (+ logit_scale) = 986.11 M;
    // 334.59 GFLOPs per image and 47.09 GFLOPs per 77-token prompt.
    const ClipConfig h = ClipConfig::vit_h14();
    CHECK(h.vision.tokens() == 257);
    CHECK(h.vision.head_dim() == 80);
    CHECK(std::round(h.vision_flops() / 1e7) / 100 == doctest::Approx(334.59));
    CHECK(std::round(h.text_flops() / 1e7) / 100 == doctest::Approx(47.09));
    CHECK(h.text_flops(10) < h.text_flops() / 7);  // an early stop at 10 positions costs ~1/8
    CHECK(ClipConfig::tiny().num_parameters() == 20'853);
}

TEST_CASE("ClipConfig::validate names the offending field") {
    auto bad = [](auto edit) {
        ClipConfig c = ClipConfig::tiny();
        edit(c);
        return error_of<Error>([&] { c.validate(); });
    };
    check_mentions(bad([](ClipConfig& c) { c.vision.heads = 3; }), {"tiny", "vision.width 16", "vision.heads 3"});
    check_mentions(bad([](ClipConfig& c) { c.text.width = 13; }), {"text.width 13", "text.heads 2"});
    check_mentions(bad([](ClipConfig& c) { c.vision.image_size = 30; }), {"image_size 30", "patch_size 14"});
    check_mentions(bad([](ClipConfig& c) { c.text.eos_token_id = 50; }), {"eos_token_id 50", "[0, 50)"});
    check_mentions(bad([](ClipConfig& c) { c.vision.layers = 0; }), {"vision.layers", "at least 1"});
    check_mentions(bad([](ClipConfig& c) { c.layer_norm_eps = 0; }), {"layer_norm_eps"});
    ClipConfig c = ClipConfig::tiny();
    c.embed_dim = 0;
    CHECK_THROWS_AS(ClipModel<double>{c}, Error);  // the model validates its configuration
}

// ---- parameters ------------------------------------------------------------------------------------

TEST_CASE("parameters: Hugging Face names and shapes, HF order, one aligned flat buffer") {
    const ClipConfig cfg = ClipConfig::tiny();
    ClipModel<double> m(cfg, {.batch = 1, .training = false});
    const auto params = m.parameters();
    CHECK(m.num_parameters() == cfg.num_parameters());
    // HF CLIPModel.named_parameters(): the model's own logit_scale, text_model, vision_model,
    // visual_projection, text_projection.
    REQUIRE(params.size() == 1 + 2 + 2 * 16 + 2 + 3 + 2 + 2 * 16 + 2 + 2);
    CHECK(params.front().name == "logit_scale");
    CHECK(params.front().view.shape() == Shape{1});
    CHECK(params[1].name == "text_model.embeddings.token_embedding.weight");
    CHECK(params[3].name == "text_model.encoder.layers.0.self_attn.k_proj.weight");
    CHECK(params[5].name == "text_model.encoder.layers.0.self_attn.v_proj.weight");
    CHECK(params[7].name == "text_model.encoder.layers.0.self_attn.q_proj.weight");
    CHECK(params[9].name == "text_model.encoder.layers.0.self_attn.out_proj.weight");
    CHECK(params[11].name == "text_model.encoder.layers.0.layer_norm1.weight");
    CHECK(params[13].name == "text_model.encoder.layers.0.mlp.fc1.weight");
    CHECK(params[15].name == "text_model.encoder.layers.0.mlp.fc2.weight");
    CHECK(params[17].name == "text_model.encoder.layers.0.layer_norm2.weight");
    CHECK(params[params.size() - 2].name == "visual_projection.weight");
    CHECK(params.back().name == "text_projection.weight");
    auto shape_of = [&](const std::string& name) {
        for (const auto& p : params)
            if (p.name == name) return p.view.shape();
        FAIL("no parameter " << name);
        return Shape{};
    };
    CHECK(shape_of("vision_model.embeddings.patch_embedding.weight") == Shape{16, 3, 14, 14});
    CHECK(shape_of("vision_model.embeddings.class_embedding") == Shape{16});
    CHECK(shape_of("vision_model.embeddings.position_embedding.weight") == Shape{5, 16});
    CHECK(shape_of("vision_model.pre_layrnorm.weight") == Shape{16});
    CHECK(shape_of("vision_model.encoder.layers.1.mlp.fc1.weight") == Shape{64, 16});
    CHECK(shape_of("vision_model.encoder.layers.1.mlp.fc2.weight") == Shape{16, 64});
    CHECK(shape_of("vision_model.post_layernorm.bias") == Shape{16});
    CHECK(shape_of("visual_projection.weight") == Shape{8, 16});
    CHECK(shape_of("text_projection.weight") == Shape{8, 12});
    CHECK(shape_of("text_model.embeddings.position_embedding.weight") == Shape{9, 12});
    CHECK(shape_of("text_model.final_layer_norm.weight") == Shape{12});
    // One flat buffer: every view inside it, 64-byte aligned, in order, not overlapping.
    const auto flat = m.flat_parameters();
    for (std::size_t i = 0; i < params.size(); ++i) {
        CAPTURE(params[i].name);
        CHECK(reinterpret_cast<std::uintptr_t>(params[i].view.data()) % 64 == 0);
        CHECK(params[i].view.data() >= flat.data());
        CHECK(params[i].view.data() + params[i].view.numel() <= flat.data() + flat.numel());
        if (i > 0) CHECK(params[i].view.data() >= params[i - 1].view.data() + params[i - 1].view.numel());
    }
    // Gradients: the same names, shapes and offsets in a second buffer.
    const auto grads = m.gradients();
    REQUIRE(grads.size() == params.size());
    const auto gflat = m.flat_gradients();
    CHECK(gflat.numel() == flat.numel());
    for (std::size_t i = 0; i < params.size(); ++i) {
        CHECK(grads[i].name == params[i].name);
        CHECK(grads[i].view.shape() == params[i].view.shape());
        CHECK(grads[i].view.data() - gflat.data() == params[i].view.data() - flat.data());
    }
    // zero_grad is one fill of the flat buffer, NaN included.
    for (double& g : gflat) g = std::nan("");
    m.zero_grad();
    CHECK(std::all_of(gflat.begin(), gflat.end(), [](double g) { return g == 0.0; }));
}

TEST_CASE("init_weights follows HF's rules and does not depend on the thread count") {
    const ClipConfig cfg = ClipConfig::tiny();
    ClipModel<double> a(cfg, {.training = false}), b(cfg, {.training = false}), u(cfg, {.training = false});
    Rng r1(5), r2(5), r3(5);
    set_num_threads(1);
    a.init_weights(r1);
    set_num_threads(2);
    b.init_weights(r2);
    u.init_weights(r3, model::InitDistribution::uniform);
    CHECK(identical(a.flat_parameters(), b.flat_parameters()));
    CHECK(a.logit_scale()[0] == doctest::Approx(std::log(1 / 0.07)));
    CHECK(a.store().value("vision_model.pre_layrnorm.weight")[3] == 1.0);
    CHECK(a.store().value("vision_model.pre_layrnorm.bias")[3] == 0.0);
    CHECK(a.store().value("text_model.encoder.layers.1.self_attn.q_proj.bias")[0] == 0.0);
    // Standard deviations of the big tensors (sample std of n draws: relative error ~ 1/sqrt(2n);
    // 600 draws give ~3%, so 15% is a wide margin that still tells 0.02 from 0.05).
    auto sample_std = [](C64 v) {
        double s = 0;
        for (double x : v) s += x * x;
        return std::sqrt(s / double(v.numel()));
    };
    for (auto* m : {&a, &u}) {
        CHECK(sample_std(m->store().value("text_model.embeddings.token_embedding.weight")) ==
              doctest::Approx(0.02).epsilon(0.15));
        CHECK(sample_std(m->store().value("vision_model.embeddings.patch_embedding.weight")) ==
              doctest::Approx(0.02).epsilon(0.15));
        // fc1: (2·16)^-1/2; fc2: 16^-1/2 (2·2 layers)^-1/2.
        CHECK(sample_std(m->store().value("vision_model.encoder.layers.0.mlp.fc1.weight")) ==
              doctest::Approx(std::pow(32.0, -0.5)).epsilon(0.15));
        CHECK(sample_std(m->store().value("vision_model.encoder.layers.0.mlp.fc2.weight")) ==
              doctest::Approx(0.125).epsilon(0.15));
    }
    const auto uw = u.store().value("vision_model.encoder.layers.0.mlp.fc1.weight");
    const double bound = std::sqrt(3.0) * std::pow(32.0, -0.5);
    CHECK(std::all_of(uw.begin(), uw.end(), [&](double x) { return std::abs(x) <= bound; }));
    CHECK_FALSE(identical(a.flat_parameters(), u.flat_parameters()));
}

// ---- the ops the model added -----------------------------------------------------------------------

TEST_CASE("select_token: pooling one token per row, forward, backward and errors") {
    Rng rng(11);
    for (const Shape s : {Shape{1, 257, 16}, Shape{3, 9, 12}, Shape{2, 1, 5}}) {
        CAPTURE(s);
        const std::int64_t B = s[0], T = s[1], C = s[2];
        T64 in = randn(s, rng);
        Ids pos(Shape{B});
        for (std::int64_t b = 0; b < B; ++b) pos[b] = std::int32_t((b * 5 + T - 1) % T);
        T64 out(Shape{B, C});
        ops::select_token_forward<double>(out, in, pos);
        for (std::int64_t b = 0; b < B; ++b)
            for (std::int64_t c = 0; c < C; ++c) CHECK(out.at(b, c) == in.at(b, pos[b], c));
        // Backward: written (stale contents overwritten), zero except the selected rows.
        T64 g = randn(Shape{B, C}, rng), din = randn(s, rng);
        ops::select_token_backward<double>(din, g, pos);
        auto loss = [&] {
            T64 o(Shape{B, C});
            ops::select_token_forward<double>(o, in, pos);
            return dot(o, g);
        };
        check_gradients("select_token " + s.str(), {{"in", in, din}}, loss, rng);
        for (std::int64_t b = 0; b < B; ++b)
            for (std::int64_t t = 0; t < T; ++t)
                if (t != pos[b]) CHECK(din.at(b, t, 0) == 0.0);
    }
    T64 in(Shape{2, 4, 3}), out(Shape{2, 3});
    Ids pos = Ids::zeros(Shape{2});
    check_mentions(error_of<ShapeError>([&] { ops::select_token_forward<double>(T64(Shape{2, 4}), in, pos); }),
                   {"select_token_forward", "[2, 4]", "[2, 4, 3]"});
    check_mentions(error_of<ShapeError>([&] { ops::select_token_forward<double>(out, in, Ids(Shape{3})); }),
                   {"select_token_forward", "positions", "[3]"});
    pos[1] = 4;
    check_mentions(error_of<Error>([&] { ops::select_token_forward<double>(out, in, pos); }),
                   {"select_token_forward", "positions[1] = 4", "[0, 4)"});
    check_mentions(error_of<Error>([&] { ops::select_token_backward<double>(in, out, pos); }),
                   {"select_token_backward", "positions[1] = 4"});
}

TEST_CASE("fill overwrites every element, NaN included") {
    Tensor<float> x(Shape{70001});
    for (float& v : x) v = std::nanf("");
    ops::fill(x.view(), 0.25);
    CHECK(std::all_of(x.begin(), x.end(), [](float v) { return v == 0.25f; }));
    Tensor<bf16> y(Shape{5});
    ops::fill(y.view(), 1.0 / 3.0);
    CHECK(float(y[4]) == float(bf16(1.0f / 3.0f)));
}

// ---- the forward against the reference ----------------------------------------------------------------

TEST_CASE("the model's forward matches a straightforward reference (f64, tiny)") {
    for (Activation act : {Activation::gelu_erf, Activation::quick_gelu}) {
        ClipConfig cfg = ClipConfig::tiny();
        cfg.activation = act;
        CAPTURE(int(act));
        ClipModel<double> m(cfg, {.batch = 3});
        Rng rng(21);
        randomize(m, rng);
        const Batch b = make_batch(cfg, 3, rng);
        const Reference ref{m};
        // Same arithmetic in another order: the differences are rounding, ~1e-16 relative per
        // operation over a few hundred operations; 1e-12 is far below any real error.
        const double tol = 1e-12;
        T64 text(Shape{3, 8}), images(Shape{6, 8});
        m.encode_text(text, b.ids);
        m.encode_images(images, b.pixels.view().reshape(Shape{6, 3, 28, 28}));
        for (std::int64_t i = 0; i < 3; ++i) {
            CHECK(max_abs_diff(text.view().select(i), ref.text(b.ids.data() + i * 9, 9)) < tol);
            for (int k = 0; k < 2; ++k)
                CHECK(max_abs_diff(images.view().select(2 * i + k), ref.image(b.pixels.view().select(i).select(k))) <
                      tol);
        }
        const double loss = m.loss(b.ids, b.pixels, b.labels, b.weights);
        CHECK(loss == doctest::Approx(ref.loss(b)).epsilon(1e-12));
        const auto out = m.outputs();
        CHECK(max_abs_diff(out.text, Vec(text.begin(), text.end())) < tol);
        CHECK(max_abs_diff(out.images, Vec(images.begin(), images.end())) < tol);
        // Probabilities of each pair sum to 1.
        for (std::int64_t i = 0; i < 3; ++i) CHECK(out.probs.at(i, 0) + out.probs.at(i, 1) == doctest::Approx(1.0));
        // Inference in chunks (a model planned for 1 prompt runs 2 inputs at a time), and after a
        // move: the same values.
        ClipModel<double> small(cfg, {.batch = 1, .training = false});
        const auto from = m.parameters(), to = small.parameters();
        for (std::size_t i = 0; i < from.size(); ++i) copy<double>(to[i].view, from[i].view);
        ClipModel<double> moved = std::move(small);
        T64 text2(Shape{3, 8}), images2(Shape{6, 8});
        moved.encode_text(text2, b.ids);
        moved.encode_images(images2, b.pixels.view().reshape(Shape{6, 3, 28, 28}));
        CHECK(max_abs_diff(text2, Vec(text.begin(), text.end())) < tol);
        CHECK(max_abs_diff(images2, Vec(images.begin(), images.end())) < tol);
        // Unnormalised embeddings are the projections: same direction.
        T64 raw(Shape{3, 8});
        m.encode_text(raw, b.ids, /*normalize=*/false);
        double n0 = 0;
        for (std::int64_t e = 0; e < 8; ++e) n0 += raw.at(0, e) * raw.at(0, e);
        CHECK(std::abs(n0 - 1.0) > 1e-3);
        for (std::int64_t e = 0; e < 8; ++e) CHECK(raw.at(0, e) / std::sqrt(n0) == doctest::Approx(text.at(0, e)));
    }
}

// ---- gradients -----------------------------------------------------------------------------------------

TEST_CASE("every parameter gradient matches finite differences; recomputation changes no bit") {
    const ClipConfig cfg = ClipConfig::tiny();
    ClipModel<double> m(cfg, {.batch = 3});
    Rng rng(31);
    randomize(m, rng);
    const Batch b = make_batch(cfg, 3, rng);
    // Gradients accumulate: start from a non-zero buffer and subtract it afterwards.
    auto flat = m.flat_gradients();
    for (double& g : flat) g = 0.0;
    std::vector<double> start;
    for (auto& g : m.gradients()) {
        for (double& x : g.view) x = rng.normal();
        start.insert(start.end(), g.view.begin(), g.view.end());
    }
    const double loss = m.loss_and_grad(b.ids, b.pixels, b.labels, b.weights);
    CHECK(std::isfinite(loss));
    std::vector<T64> grads;
    std::size_t k = 0;
    for (auto& g : m.gradients()) {
        T64 d(g.view.shape());
        for (std::int64_t i = 0; i < d.numel(); ++i) d[i] = g.view[i] - start[k++];
        grads.push_back(std::move(d));
    }
    const auto params = m.parameters();
    std::vector<GradInput> inputs;
    for (std::size_t i = 0; i < params.size(); ++i) inputs.push_back({params[i].name, params[i].view, grads[i]});
    GradCheckOptions opt;
    opt.directions = 2;
    opt.coordinates = 1;
    check_gradients("ClipModel (tiny, f64)", inputs, [&] { return m.loss(b.ids, b.pixels, b.labels, b.weights); },
                    rng, opt);
    // Every tensor's gradient is non-zero somewhere (no parameter left out of backward), except
    // the key bias: it adds q_i·b_k to every score of query i, which softmax cancels, so its
    // gradient is zero up to rounding.
    for (std::size_t i = 0; i < grads.size(); ++i) {
        CAPTURE(params[i].name);
        const bool key_bias = params[i].name.find("k_proj.bias") != std::string::npos;
        double largest = 0;
        for (double g : grads[i]) largest = std::max(largest, std::abs(g));
        if (key_bias)
            CHECK(largest < 1e-12);
        else
            CHECK(largest > 1e-6);
    }

    // Recomputation: the same loss and bit-identical gradients.
    m.zero_grad();
    const double l0 = m.loss_and_grad(b.ids, b.pixels, b.labels, b.weights);
    const T64 g0 = clone(m.flat_gradients());
    m.set_recompute(true);
    CHECK(m.recompute());
    m.zero_grad();
    const double l1 = m.loss_and_grad(b.ids, b.pixels, b.labels, b.weights);
    CHECK(l1 == l0);
    CHECK(identical(m.flat_gradients(), g0.view()));
}

TEST_CASE("the text tower pools at the first end-of-text token and inference stops there") {
    const ClipConfig cfg = ClipConfig::tiny();
    const std::int32_t eos = cfg.text.eos_token_id;
    ClipModel<double> m(cfg, {.batch = 2});
    Rng rng(41);
    randomize(m, rng);
    // Rows with end-of-text at 2 and 5; a and b differ only after it (padding 0, random ids,
    // another end-of-text), so their embeddings must be identical.
    Ids a = make_ids(cfg, 9, {2, 5}, rng, 0);
    Ids c = clone(a.view());
    for (std::int64_t t = 3; t < 9; ++t) c.at(0, t) = std::int32_t(rng.below(50));
    c.at(1, 6) = eos;
    c.at(1, 8) = 7;
    T64 ea(Shape{2, 8}), ec(Shape{2, 8});
    m.encode_text(ea, a);
    m.encode_text(ec, c);
    CHECK(identical(ea.view(), ec.view()));
    // The early stop (inference runs 6 positions) equals the full 9-position training forward.
    const T64 pixels = randn(Shape{2, 2, 3, 28, 28}, rng);
    m.forward_train(a, pixels);
    CHECK(max_abs_diff(m.outputs().text, Vec(ea.begin(), ea.end())) < 1e-14);
    m.forward_train(c, pixels);
    CHECK(max_abs_diff(m.outputs().text, Vec(ea.begin(), ea.end())) < 1e-14);
    // Moving the first end-of-text token changes the embedding.
    Ids d = clone(a.view());
    d.at(0, 2) = 3;
    d.at(0, 4) = eos;
    T64 ed(Shape{2, 8});
    m.encode_text(ed, d);
    CHECK(std::abs(ed.at(0, 0) - ea.at(0, 0)) > 1e-6);
    CHECK(max_abs_diff(ed.view().select(1), Vec(ea.begin() + 8, ea.end())) == 0.0);
    // Shorter id rows than the context work too (positions 0..L-1).
    Ids s(Shape{2, 6});
    for (std::int64_t i = 0; i < 12; ++i) s[i] = a.at(i / 6, i % 6);
    T64 es(Shape{2, 8});
    m.encode_text(es, s);
    CHECK(max_abs_diff(es.view(), Vec(ea.begin(), ea.end())) < 1e-14);
}

TEST_CASE("gradient accumulation: two half batches add up to the full batch") {
    const ClipConfig cfg = ClipConfig::tiny();
    ClipModel<double> m(cfg, {.batch = 4});
    Rng rng(51);
    randomize(m, rng);
    const Batch b = make_batch(cfg, 4, rng);
    m.zero_grad();
    const double full = m.loss_and_grad(b.ids, b.pixels, b.labels, b.weights);
    const T64 g_full = clone(m.flat_gradients());
    m.zero_grad();
    double halves = 0;
    for (std::int64_t i : {0, 2}) {
        // The weights stay those normalised over the full batch (each half sums to less than 1).
        halves += m.loss_and_grad(b.ids.view().slice(i, i + 2), b.pixels.view().slice(i, i + 2),
                                  b.labels.view().slice(i, i + 2), b.weights.view().slice(i, i + 2));
    }
    CHECK(halves == doctest::Approx(full).epsilon(1e-13));
    // Sums of the same terms in another grouping: rounding only.
    CHECK(max_scaled_error(m.flat_gradients(), g_full.view(), 1e-15, 1e-11) <= 1.0);
    
}

// ---- memory -----------------------------------------------------------------------------------------------

TEST_CASE("memory plan: a step uses exactly the planned arenas") {
    const ClipConfig cfg = ClipConfig::tiny();
    for (bool recompute : {false, true}) {
        CAPTURE(recompute);
        const ClipOptions opt{.batch = 3, .training = true, .recompute = recompute};
        ClipModel<float> m(cfg, opt);
        Rng rng(61);
        m.init_weights(rng);
        const auto plan = ClipModel<float>::plan_memory(cfg, opt);
        CHECK(plan.activations.bytes() == m.memory_plan().activations.bytes());
        CHECK(plan.scratch.bytes() == m.memory_plan().scratch.bytes());
        CHECK(m.activation_arena().capacity() == plan.activations.bytes());
        CHECK(m.scratch_arena().capacity() == plan.scratch.bytes());
        const Batch b = make_batch(cfg, 3, rng);
        const Tensor<float> pixels = to_dtype<float>(b.pixels.view());
        const Tensor<float> labels = to_dtype<float>(b.labels.view()), weights = to_dtype<float>(b.weights.view());
        m.zero_grad();
        m.loss_and_grad(b.ids, pixels, labels, weights);
        CHECK(m.activation_arena().used() == plan.activations.bytes());
        CHECK(m.scratch_arena().used() == 0);
        // Inference of full chunks (6 inputs) reaches the rest of the scratch plan.
        Tensor<float> out(Shape{6, 8});
        m.encode_images(out, pixels.view().reshape(Shape{6, 3, 28, 28}));
        Ids ids6(Shape{6, 9});
        for (std::int64_t i = 0; i < ids6.numel(); ++i) ids6[i] = i % 9 == 8 ? 49 : 1;
        m.encode_text(out, ids6);
        CHECK(m.scratch_arena().peak() == plan.scratch.bytes());
        // A second step reuses the same memory; a smaller batch uses less of it.
        m.loss_and_grad(b.ids.view().slice(0, 1), pixels.view().slice(0, 1), labels.view().slice(0, 1),
                        weights.view().slice(0, 1));
        CHECK(m.activation_arena().used() < plan.activations.bytes());
        CHECK(m.scratch_arena().peak() == plan.scratch.bytes());
    }
    // Recomputation keeps less; inference-only models plan no activations.
    const auto full = ClipModel<float>::plan_memory(cfg, {.batch = 3});
    const auto rec = ClipModel<float>::plan_memory(cfg, {.batch = 3, .recompute = true});
    const auto inf = ClipModel<float>::plan_memory(cfg, {.batch = 3, .training = false});
    CHECK(rec.activations.bytes() < full.activations.bytes() / 2);
    CHECK(inf.activations.bytes() == 0);
    CHECK(inf.scratch.bytes() <= full.scratch.bytes());
    // At ViT-H/14 size, 16 prompts (32 images) per step: what the training step keeps, f32.
    const auto h = ClipModel<float>::plan_memory(ClipConfig::vit_h14(), {.batch = 16});
    const auto hr = ClipModel<float>::plan_memory(ClipConfig::vit_h14(), {.batch = 16, .recompute = true});
    MESSAGE("ViT-H/14, batch 16, f32: activations " << h.activations.bytes() / 1e9 << " GB, scratch "
                                                    << h.scratch.bytes() / 1e9 << " GB; with recomputation "
                                                    << hr.activations.bytes() / 1e9 << " GB + "
                                                    << hr.scratch.bytes() / 1e9 << " GB");
    CHECK(hr.activations.bytes() + hr.scratch.bytes() < (h.activations.bytes() + h.scratch.bytes()) / 4);
}

// ---- element types --------------------------------------------------------------------------------------

TEST_CASE("f32 and bf16 models agree with the f64 model") {
    const ClipConfig cfg = ClipConfig::tiny();
    ClipModel<double> m64(cfg, {.batch = 3});
    Rng rng(71);
    randomize(m64, rng);
    const Batch b = make_batch(cfg, 3, rng);
    m64.zero_grad();
    const double l64 = m64.loss_and_grad(b.ids, b.pixels, b.labels, b.weights);
    T64 t64(Shape{3, 8});
    m64.encode_text(t64, b.ids);
    auto run = [&](auto tag, double emb_tol, double loss_tol, double grad_tol) {
        using T = decltype(tag);
        ClipModel<T> m(cfg, {.batch = 3});
        const auto src = m64.parameters();
        const auto dst = m.parameters();
        for (std::size_t i = 0; i < src.size(); ++i) convert<T, double>(dst[i].view, src[i].view);
        const Tensor<T> pixels = to_dtype<T>(b.pixels.view());
        const Tensor<float> labels = to_dtype<float>(b.labels.view()), weights = to_dtype<float>(b.weights.view());
        m.zero_grad();
        const double l = m.loss_and_grad(b.ids, pixels, labels, weights);
        Tensor<T> t(Shape{3, 8});
        m.encode_text(t, b.ids);
        CHECK(max_scaled_error(t.view(), t64.view(), emb_tol, 0.0) <= 1.0);
        CHECK(l == doctest::Approx(l64).epsilon(loss_tol));
        CHECK(relative_error(m.gradients(), m64.gradients()) < grad_tol);
    };
    // f32: ~6e-8 relative rounding per operation through 2 blocks and the loss; measured ~1e-6 on
    // embeddings and gradients, 1e-5 leaves a margin of ~10x. bf16 stores every weight,
    // activation and gradient with 8 significant bits (2^-9 relative rounding each time; measured:
    // embeddings 4e-3 off with elements ~0.35, loss 1.6%, the gradient vector 2.5%): 1.5e-2, 4%
    // and 8% leave ~3x, and stay far below what a wrong formula gives (O(1)).
    run(float{}, 1e-5, 1e-5, 1e-5);
    run(bf16{}, 1.5e-2, 4e-2, 8e-2);
}

// ---- errors ------------------------------------------------------------------------------------------------

TEST_CASE("model errors name the call, the argument and the shapes") {
    const ClipConfig cfg = ClipConfig::tiny();
    ClipModel<double> m(cfg, {.batch = 2});
    Rng rng(81);
    m.init_weights(rng);
    Ids ids = make_ids(cfg, 9, {3, 4}, rng);
    ids.at(1, 4) = 5;  // row 1 loses its end-of-text token
    T64 out(Shape{2, 8});
    check_mentions(error_of<Error>([&] { m.encode_text(out, ids); }),
                   {"TextTower::infer", "row 1", "[2, 9]", "no end-of-text token (id 49)"});
    ids.at(1, 4) = 49;
    ids.at(0, 1) = 50;  // outside the vocabulary
    check_mentions(error_of<Error>([&] { m.encode_text(out, ids); }), {"token id 50", "[0, 1]"});
    ids.at(0, 1) = 1;
    check_mentions(error_of<ShapeError>([&] { m.encode_text(T64(Shape{2, 7}), ids); }),
                   {"encode_text", "out", "[2, 7]", "[2, 8]"});
    check_mentions(error_of<ShapeError>([&] { m.encode_text(out, Ids::zeros(Shape{2, 10})); }),
                   {"ids", "[2, 10]", "9 positions"});
    check_mentions(error_of<ShapeError>([&] { m.encode_images(out, T64(Shape{2, 3, 27, 27})); }),
                   {"pixels", "[2, 3, 27, 27]", "[2, 3, 28, 28]"});
    const T64 pixels(Shape{2, 2, 3, 28, 28}), labels(Shape{2, 2}), weights(Shape{2});
    check_mentions(error_of<ShapeError>([&] { m.forward_train(make_ids(cfg, 9, {1, 1, 1}, rng), T64(Shape{3, 2, 3, 28, 28})); }),
                   {"forward_train", "[3, 9]", "1 to 2"});
    check_mentions(error_of<ShapeError>([&] { m.forward_train(ids, T64(Shape{2, 3, 28, 28})); }),
                   {"forward_train", "pixels", "[2, 3, 28, 28]", "[2, 2, 3, 28, 28]"});
    CHECK_THROWS_AS(m.outputs(), Error);
    ClipModel<double> inference(cfg, {.training = false});
    check_mentions(error_of<Error>([&] { inference.forward_train(ids, pixels); }), {"training = false"});
}

// ---- ViT-H/14 at its real size ----------------------------------------------------------------------------

TEST_CASE("ViT-H/14 at real size: one image and one prompt, inference path against training path" *
          doctest::test_suite("slow")) {
    const ClipConfig cfg = ClipConfig::vit_h14();
    // f32: 3.94 GB of parameters, ~1.1 GB of activations for one training prompt (two images);
    // the gradient buffer is never touched, so never allocated.
    ClipModel<float> m(cfg, {.batch = 1});
    CHECK(m.num_parameters() == 986'109'441);
    CHECK(m.store().value("visual_projection.weight").shape() == Shape{1024, 1280});
    CHECK(m.store().value("vision_model.embeddings.patch_embedding.weight").shape() == Shape{1280, 3, 14, 14});
    CHECK(m.store().value("vision_model.embeddings.position_embedding.weight").shape() == Shape{257, 1280});
    CHECK(m.store().value("text_model.embeddings.token_embedding.weight").shape() == Shape{49408, 1024});
    CHECK_FALSE(m.store().has_gradients());
    Rng rng(91);
    m.init_weights(rng, model::InitDistribution::uniform);

    Tensor<float> pixels(Shape{1, 2, 3, 224, 224});
    fill_normal(pixels.view(), rng);
    Ids ids = Ids::zeros(Shape{1, 77});
    const std::int32_t prompt[] = {49406, 320, 1125, 539, 320, 2368, 530, 518, 3326, 49407};
    std::copy(std::begin(prompt), std::end(prompt), ids.data());

    m.forward_train(ids, pixels);  // the training path: saves every block, all 77 positions
    const auto train = m.outputs();
    Tensor<float> img(Shape{1, 1024}), txt(Shape{1, 1024});
    m.encode_images(img, pixels.view().select(0).slice(0, 1));  // inference: nothing saved
    m.encode_text(txt, ids);                                    // inference: 10 positions
    CHECK(train.images.shape() == Shape{1, 2, 1024});
    CHECK(train.text.shape() == Shape{1, 1024});
    auto finite_unit = [](TensorView<const float, Cpu> v) {
        double n = 0;
        for (float x : v) {
            if (!std::isfinite(x)) return false;
            n += double(x) * x;
        }
        return std::abs(n - 1.0) < 1e-4;
    };
    CHECK(finite_unit(img.view()));
    CHECK(finite_unit(txt.view()));
    CHECK(finite_unit(train.images.select(0).select(1)));
    // Same arithmetic, different GEMM shapes (257 vs 514 rows, 10 vs 77 positions), so blocking
    // and thread splits differ: f32 rounding (~6e-8 relative) accumulated through 32 residual
    // blocks. Elements of a unit vector in 1024 dimensions are ~0.03; 1e-4 absolute is ~0.3% of
    // that and far below what any real difference would give.
    CHECK(max_scaled_error(img.view().select(0), train.images.select(0).select(0), 1e-4, 0.0) <= 1.0);
    CHECK(max_scaled_error(txt.view(), train.text, 1e-4, 0.0) <= 1.0);
    // The two images differ, and so do their embeddings.
    CHECK(max_scaled_error(train.images.select(0).select(1), train.images.select(0).select(0), 1e-5, 0.0) > 1.0);
    double cos = 0;
    for (std::int64_t e = 0; e < 1024; ++e) cos += double(img[e]) * txt[e];
    MESSAGE("ViT-H/14 random weights: cos(text, image) = " << cos << ", activation arena "
                                                           << m.activation_arena().capacity() / 1e9 << " GB");
    CHECK(std::abs(cos) <= 1.0);
}
