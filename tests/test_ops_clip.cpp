// The CLIP-specific ops: token and class/position embeddings, patchify, L2 normalisation, the
// PickScore preference loss, AdamW and gradient clipping. Forwards against independent
// computations written out here, backwards against finite differences, and the errors.
//
// Tolerances of 1e-15..1e-14 (relative, in double) compare the same arithmetic done in another
// order or through another formula: a few ulps. Others say why where they stand.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "support/files.hpp"
#include <pickscore/ops/embedding.hpp>
#include <pickscore/ops/loss.hpp>
#include <pickscore/ops/normalize.hpp>
#include <pickscore/ops/optim.hpp>
#include <pickscore/ops/patches.hpp>

#include "support/gradcheck.hpp"

using namespace pickscore;
using namespace pickscore::test;

namespace {

using Ids = Tensor<std::int32_t>;

template <class E = ShapeError>
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
    test::expect_error_of<E>(f, parts);
}

// True when a and b hold exactly the same values.
template <class A, class B>
bool identical(const TensorView<A>& a, const TensorView<B>& b) {
    if (a.shape() != b.shape()) return false;
    for (std::int64_t i = 0; i < a.numel(); ++i)
        if (!(cast<double>(a[i]) == cast<double>(b[i]))) return false;
    return true;
}

// x - x0, element by element (the part a backward added to a non-zero gradient buffer).
T64 minus(C64 x, C64 x0) {
    T64 r(x.shape());
    for (std::int64_t i = 0; i < x.numel(); ++i) r[i] = x[i] - x0[i];
    return r;
}

}  // namespace

// ---- token embedding ---------------------------------------------------------------------------

TEST_CASE("token embedding forward gathers rows and adds positions") {
    Rng rng(11);
    const std::int64_t B = 2, T = 5, C = 13, V = 7, P = 9;
    T64 tok = randn(Shape{V, C}, rng), pos = randn(Shape{P, C}, rng), out(Shape{B, T, C});
    Ids ids(Shape{B, T});
    for (std::int64_t i = 0; i < ids.numel(); ++i) ids[i] = std::int32_t(rng.below(V));
    ops::token_embedding_forward(out, ids, tok, pos);
    for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t t = 0; t < T; ++t)
            for (std::int64_t c = 0; c < C; ++c)
                CHECK(out.at(b, t, c) == tok.at(ids.at(b, t), c) + pos.at(t, c));  // one rounding, both sides
}

TEST_CASE("token embedding backward matches finite differences, repeated ids included") {
    struct Case {
        std::int64_t B, T, C, V, P;
    };
    // V < B*T forces repeated ids (scatter-add); batch 1 with 77 tokens; widths 13 and 80; P > T.
    const Case cases[] = {{1, 77, 13, 10, 77}, {2, 5, 8, 3, 7}, {3, 4, 80, 50, 4}, {1, 1, 1, 1, 1}};
    Rng rng(12);
    for (const auto& c : cases) {
        T64 tok = randn(Shape{c.V, c.C}, rng), pos = randn(Shape{c.P, c.C}, rng);
        Ids ids(Shape{c.B, c.T});
        for (std::int64_t i = 0; i < ids.numel(); ++i) ids[i] = std::int32_t(rng.below(std::uint64_t(c.V)));
        ids[0] = 0;
        if (ids.numel() > 1) ids[ids.numel() - 1] = 0;  // at least one id repeats
        T64 g = randn(Shape{c.B, c.T, c.C}, rng);
        auto loss = [&] {
            T64 out(Shape{c.B, c.T, c.C});
            ops::token_embedding_forward(out, ids, tok, pos);
            return dot(out, g);
        };
        T64 dtok0 = randn(tok.shape(), rng), dpos0 = randn(pos.shape(), rng);
        T64 dtok = clone(dtok0.view()), dpos = clone(dpos0.view());
        ops::token_embedding_backward(dtok, dpos, g, ids);
        T64 gtok = minus(dtok, dtok0), gpos = minus(dpos, dpos0);
        const std::string what = "token embedding B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) +
                                 " C=" + std::to_string(c.C) + " V=" + std::to_string(c.V);
        check_gradients(what, {{"token_table", tok, gtok}, {"pos_table", pos, gpos}}, loss, rng);
        // Rows of pos_table beyond T and tokens that never occur receive nothing.
        for (std::int64_t t = c.T; t < c.P; ++t)
            for (std::int64_t k = 0; k < c.C; ++k) CHECK(gpos.at(t, k) == 0.0);
    }
    // Either gradient may be left out.
    T64 tok = randn(Shape{4, 3}, rng), g = randn(Shape{1, 2, 3}, rng), dtok = zeros(Shape{4, 3});
    Ids ids(Shape{1, 2});
    ids[0] = 2;
    ids[1] = 2;
    ops::token_embedding_backward<double>(dtok, {}, g, ids);
    CHECK(dtok.at(2, 1) == doctest::Approx(g.at(0, 0, 1) + g.at(0, 1, 1)).epsilon(1e-15));  // one addition
    CHECK(dtok.at(0, 1) == 0.0);
}

TEST_CASE("a token id outside the vocabulary throws, naming the id and its position") {
    T64 tok = zeros(Shape{5, 3}), pos = zeros(Shape{4, 3});
    T64 out = T64::full(Shape{2, 4, 3}, 7.0);
    Ids ids = Ids::zeros(Shape{2, 4});
    ids.at(1, 2) = 5;  // V = 5: one past the end
    expect_error<Error>([&] { ops::token_embedding_forward(out, ids, tok, pos); },
                        {"token_embedding_forward", "token id 5", "[1, 2]", "[0, 5)"});
    for (double x : out) CHECK(x == 7.0);  // checked before anything is written
    ids.at(1, 2) = 0;
    ids.at(0, 3) = -1;
    expect_error<Error>([&] { ops::token_embedding_forward(out, ids, tok, pos); }, {"token id -1", "[0, 3]"});
    T64 dtok = zeros(Shape{5, 3}), dout = zeros(Shape{2, 4, 3});
    expect_error<Error>([&] { ops::token_embedding_backward<double>(dtok, {}, dout, ids); },
                        {"token_embedding_backward", "token id -1", "[0, 3]"});
}

// ---- class and position embedding (vision) -----------------------------------------------------

TEST_CASE("class_position forward prepends the class embedding and adds positions") {
    Rng rng(21);
    const std::int64_t B = 2, P = 4, C = 5;
    T64 patches = randn(Shape{B, P, C}, rng), cls = randn(Shape{C}, rng), pos = randn(Shape{P + 1, C}, rng);
    T64 out(Shape{B, P + 1, C});
    ops::class_position_forward(out, patches, cls, pos);
    for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t c = 0; c < C; ++c) {
            CHECK(out.at(b, 0, c) == cls.at(c) + pos.at(0, c));
            for (std::int64_t p = 0; p < P; ++p) CHECK(out.at(b, p + 1, c) == patches.at(b, p, c) + pos.at(p + 1, c));
        }
}

TEST_CASE("class_position backward matches finite differences") {
    struct Case {
        std::int64_t B, P, C;
    };
    // 257 tokens (256 patches + class) at batch 1; width 80; width 13.
    const Case cases[] = {{1, 256, 13}, {3, 4, 80}, {2, 1, 7}};
    Rng rng(22);
    for (const auto& c : cases) {
        T64 patches = randn(Shape{c.B, c.P, c.C}, rng), cls = randn(Shape{c.C}, rng);
        T64 pos = randn(Shape{c.P + 1, c.C}, rng), g = randn(Shape{c.B, c.P + 1, c.C}, rng);
        auto loss = [&] {
            T64 out(Shape{c.B, c.P + 1, c.C});
            ops::class_position_forward(out, patches, cls, pos);
            return dot(out, g);
        };
        T64 dpatches = T64::full(patches.shape(), 99.0);  // written, so the old contents must vanish
        T64 dcls0 = randn(cls.shape(), rng), dpos0 = randn(pos.shape(), rng);
        T64 dcls = clone(dcls0.view()), dpos = clone(dpos0.view());
        ops::class_position_backward(dpatches, dcls, dpos, g);
        T64 gcls = minus(dcls, dcls0), gpos = minus(dpos, dpos0);
        check_gradients("class_position B=" + std::to_string(c.B) + " P=" + std::to_string(c.P) +
                            " C=" + std::to_string(c.C),
                        {{"patches", patches, dpatches}, {"cls", cls, gcls}, {"pos", pos, gpos}}, loss, rng);
    }
}

// ---- patchify ----------------------------------------------------------------------------------

TEST_CASE("patchify on a 4x4 image with patch 2, written out by hand") {
    T64 image(Shape{1, 1, 4, 4});
    for (std::int64_t i = 0; i < 16; ++i) image[i] = double(i);  // value = 4·y + x
    T64 out(Shape{1, 4, 4});
    ops::patchify(out, image, 2);
    const double expected[4][4] = {{0, 1, 4, 5}, {2, 3, 6, 7}, {8, 9, 12, 13}, {10, 11, 14, 15}};
    for (int n = 0; n < 4; ++n)
        for (int k = 0; k < 4; ++k) CHECK(out.at(0, n, k) == expected[n][k]);
}

TEST_CASE("patchify follows the conv-weight flattening") {
    struct Case {
        std::int64_t B, C, H, W, p;
    };
    // CLIP's patch 14 on a 28x42 image (a 2x3 grid); patch 2 on tiny images.
    const Case cases[] = {{2, 3, 28, 42, 14}, {1, 3, 2, 4, 2}, {2, 3, 6, 2, 2}, {1, 3, 3, 3, 1}};
    Rng rng(31);
    for (const auto& c : cases) {
        T64 image = randn(Shape{c.B, c.C, c.H, c.W}, rng);
        const std::int64_t gh = c.H / c.p, gw = c.W / c.p;
        T64 out(Shape{c.B, gh * gw, c.C * c.p * c.p});
        ops::patchify(out, image, c.p);
        std::int64_t mismatches = 0;
        for (std::int64_t b = 0; b < c.B; ++b)
            for (std::int64_t ch = 0; ch < c.C; ++ch)
                for (std::int64_t y = 0; y < c.H; ++y)
                    for (std::int64_t x = 0; x < c.W; ++x) {
                        const std::int64_t row = (y / c.p) * gw + x / c.p;
                        const std::int64_t col = ch * c.p * c.p + (y % c.p) * c.p + x % c.p;
                        if (out.at(b, row, col) != image.at(b, ch, y, x)) ++mismatches;
                    }
        CHECK_MESSAGE(mismatches == 0, c.H << "x" << c.W << " patch " << c.p);
        // unpatchify is the inverse here (the patches do not overlap).
        T64 back = T64::full(image.shape(), 5.0);
        ops::unpatchify(back, out, c.p);
        CHECK(identical(back.cview(), image.cview()));
    }
}

TEST_CASE("unpatchify is the backward of patchify (finite differences)") {
    Rng rng(32);
    const std::int64_t shapes[][5] = {{1, 3, 28, 42, 14}, {2, 3, 4, 6, 2}};
    for (const auto& s : shapes) {
        const std::int64_t B = s[0], C = s[1], H = s[2], W = s[3], p = s[4];
        T64 image = randn(Shape{B, C, H, W}, rng);
        const Shape rows{B, (H / p) * (W / p), C * p * p};
        T64 g = randn(rows, rng);
        auto loss = [&] {
            T64 out(rows);
            ops::patchify(out, image, p);
            return dot(out, g);
        };
        T64 dimage = T64::full(image.shape(), -3.0);
        ops::unpatchify(dimage, g, p);
        check_gradients("patchify " + image.shape().str() + " p=" + std::to_string(p), {{"image", image, dimage}},
                        loss, rng);
    }
}

TEST_CASE("patchify rejects sizes that are not multiples of the patch") {
    T64 image = zeros(Shape{1, 3, 28, 30}), out(Shape{1, 4, 588});
    expect_error([&] { ops::patchify(out, image, 14); }, {"patchify", "[1, 3, 28, 30]", "14"});
    T64 image2 = zeros(Shape{1, 3, 28, 28}), wrong(Shape{1, 4, 587});
    expect_error([&] { ops::patchify(wrong, image2, 14); }, {"patchify", "[1, 4, 587]", "[1, 3, 28, 28]"});
    expect_error([&] { ops::unpatchify(image2, wrong, 14); }, {"unpatchify", "[1, 4, 587]", "[1, 3, 28, 28]"});
    expect_error([&] { ops::patchify(out, image2, 0); }, {"patchify", "patch size"});
}

// ---- L2 normalisation --------------------------------------------------------------------------

TEST_CASE("l2_normalize forward divides each row by its norm; a zero row gives zeros") {
    Rng rng(41);
    T64 in = randn(Shape{2, 3, 13}, rng), out(in.shape());
    for (std::int64_t k = 0; k < 13; ++k) in.at(1, 2, k) = 0.0;  // one zero row
    Tensor<double> norm(Shape{2, 3});
    ops::l2_normalize_forward(out, norm, in);
    for (std::int64_t r = 0; r < 6; ++r) {
        double ss = 0;
        for (std::int64_t k = 0; k < 13; ++k) ss += in[r * 13 + k] * in[r * 13 + k];
        const double n = std::sqrt(ss);
        CHECK(norm[r] == doctest::Approx(n).epsilon(1e-15));  // same sum, same order: an ulp at most
        for (std::int64_t k = 0; k < 13; ++k)
            CHECK(out[r * 13 + k] == doctest::Approx(n > 0 ? in[r * 13 + k] / n : 0.0).epsilon(1e-15));
    }
    for (std::int64_t k = 0; k < 13; ++k) CHECK(out.at(1, 2, k) == 0.0);
    CHECK(norm.at(1, 2) == 0.0);
    // The norm may be left out, or given as [R].
    T64 out2(in.shape());
    ops::l2_normalize_forward<double>(out2, {}, in);
    CHECK(identical(out2.cview(), out.cview()));
    Tensor<double> flat_norm(Shape{6});
    ops::l2_normalize_forward(out2, flat_norm, in);
    CHECK(identical(flat_norm.cview(), norm.reshape(Shape{6}).cview()));
    // The zero row's gradient is zero (the op's choice; PyTorch's x / x.norm() would give NaN).
    T64 dout = randn(in.shape(), rng), din(in.shape());
    ops::l2_normalize_backward(din, dout, out, norm);
    for (std::int64_t k = 0; k < 13; ++k) CHECK(din.at(1, 2, k) == 0.0);
}

TEST_CASE("l2_normalize backward matches finite differences") {
    // Batch 1 with width 13; CLIP's embedding width 1024; rank 3 with width 80; a plain vector.
    const Shape shapes[] = {Shape{1, 13}, Shape{4, 1024}, Shape{2, 3, 80}, Shape{7}};
    Rng rng(42);
    for (const Shape& s : shapes) {
        T64 x = randn(s, rng, 2.0), g = randn(s, rng);
        auto loss = [&] {
            T64 out(s);
            ops::l2_normalize_forward<double>(out, {}, x);
            return dot(out, g);
        };
        T64 out(s), din = T64::full(s, 11.0);
        Tensor<double> norm(Shape{s.rows()});
        ops::l2_normalize_forward(out, norm, x);
        ops::l2_normalize_backward(din, g, out, norm);
        check_gradients("l2_normalize " + s.str(), {{"in", x, din}}, loss, rng);
    }
}

// ---- the PickScore preference loss -------------------------------------------------------------

TEST_CASE("preference weights are inverse counts normalised over the batch") {
    Tensor<double> n(Shape{3}), w(Shape{3});
    n[0] = 1;
    n[1] = 2;
    n[2] = 4;
    ops::preference_weights(w, n);
    // 1/n = [1, 1/2, 1/4], Σ = 7/4; exact up to the final division's rounding.
    CHECK(w[0] == doctest::Approx(4.0 / 7).epsilon(1e-15));
    CHECK(w[1] == doctest::Approx(2.0 / 7).epsilon(1e-15));
    CHECK(w[2] == doctest::Approx(1.0 / 7).epsilon(1e-15));
    Tensor<float> nf(Shape{2}), wf(Shape{2});
    nf[0] = 3;
    nf[1] = 0;
    expect_error<Error>([&] { ops::preference_weights(wf, nf); }, {"preference_weights", "num_example_per_prompt[1]"});
}

TEST_CASE("the loss on a hand-computed example: a win, a loss and a tie") {
    // E = 2, logit_scale = 0 (scale 1). Example 0: scores (1, 0), label win: KL = -log σ(1).
    // Example 1: scores (1, 0), label loss: KL = -log(1 - σ(1)). Example 2: equal images, tie:
    // p = (1/2, 1/2) = y, KL = 0.
    T64 text = zeros(Shape{3, 2}), images = zeros(Shape{3, 2, 2});
    text.at(0, 0) = text.at(1, 0) = text.at(2, 1) = 1.0;
    images.at(0, 0, 0) = images.at(1, 0, 0) = 1.0;  // image 0 along text, image 1 orthogonal
    images.at(0, 1, 1) = images.at(1, 1, 1) = 1.0;
    images.at(2, 0, 1) = images.at(2, 1, 1) = 1.0;  // two equal images
    T64 labels = zeros(Shape{3, 2}), weights(Shape{3}), logit_scale = zeros(Shape{1}), probs(Shape{3, 2});
    labels.at(0, 0) = 1;
    labels.at(1, 1) = 1;
    labels.at(2, 0) = labels.at(2, 1) = 0.5;
    weights[0] = 0.5;
    weights[1] = 0.25;
    weights[2] = 0.25;
    const double L = ops::pickscore_loss_forward<double>(probs, text, images, labels, weights, logit_scale);
    const double sig = 1.0 / (1.0 + std::exp(-1.0));  // log-softmax vs the logistic form: ulps apart
    CHECK(probs.at(0, 0) == doctest::Approx(sig).epsilon(1e-15));
    CHECK(probs.at(1, 1) == doctest::Approx(1 - sig).epsilon(1e-15));
    CHECK(probs.at(2, 0) == doctest::Approx(0.5).epsilon(1e-15));
    CHECK(L == doctest::Approx(0.5 * -std::log(sig) + 0.25 * -std::log(1 - sig)).epsilon(1e-14));
    // The tie alone: the minimum KL, exactly 0, and no gradient anywhere.
    T64 w1 = T64::full(Shape{1}, 1.0), p1(Shape{1, 2});
    const double tie =
        ops::pickscore_loss_forward<double>(p1, text.slice(2, 3), images.slice(2, 3), labels.slice(2, 3), w1,
                                            logit_scale);
    // p = y up to the rounding of log and exp: |KL| and the gradients are at most a few 1e-16.
    CHECK(std::abs(tie) <= 1e-15);
    T64 dt(Shape{1, 2}), di(Shape{1, 2, 2}), dls = zeros(Shape{1});
    ops::pickscore_loss_backward(dt, di, dls, p1, text.slice(2, 3), images.slice(2, 3), labels.slice(2, 3), w1,
                                 logit_scale);
    for (double x : dt) CHECK(std::abs(x) <= 1e-15);
    for (double x : di) CHECK(std::abs(x) <= 1e-15);
    CHECK(std::abs(dls[0]) <= 1e-15);
}

namespace {
struct LossBatch {
    T64 text, images, labels, weights, logit_scale;
};

// N examples of width E, L2-normalised, labels cycling win / loss / tie, unequal weights.
LossBatch make_loss_batch(std::int64_t N, std::int64_t E, double logit_scale, Rng& rng) {
    LossBatch b{T64(Shape{N, E}), T64(Shape{N, 2, E}), zeros(Shape{N, 2}), T64(Shape{N}),
                T64::full(Shape{1}, logit_scale)};
    ops::l2_normalize_forward<double>(b.text, {}, randn(Shape{N, E}, rng));
    ops::l2_normalize_forward<double>(b.images, {}, randn(Shape{N, 2, E}, rng));
    T64 counts(Shape{N});
    for (std::int64_t i = 0; i < N; ++i) {
        counts[i] = double(1 + (i * 7) % 5);
        const std::int64_t kind = i % 3;
        b.labels.at(i, 0) = kind == 0 ? 1.0 : kind == 1 ? 0.0 : 0.5;
        b.labels.at(i, 1) = 1.0 - b.labels.at(i, 0);
    }
    ops::preference_weights(b.weights, counts);
    return b;
}
}  // namespace

TEST_CASE("the loss is the weighted cross-entropy minus the label entropy") {
    Rng rng(51);
    LossBatch b = make_loss_batch(9, 13, 2.3, rng);
    T64 probs(Shape{9, 2});
    const double L =
        ops::pickscore_loss_forward<double>(probs, b.text, b.images, b.labels, b.weights, b.logit_scale);
    double expected = 0;
    for (std::int64_t i = 0; i < 9; ++i) {
        double s[2];
        for (int k = 0; k < 2; ++k) {
            double d = 0;
            for (std::int64_t e = 0; e < 13; ++e) d += b.text.at(i, e) * b.images.at(i, k, e);
            s[k] = std::exp(2.3) * d;
        }
        const double p0 = 1.0 / (1.0 + std::exp(s[1] - s[0])), p[2] = {p0, 1.0 - p0};
        double ce = 0, h = 0;
        for (int k = 0; k < 2; ++k) {
            const double y = b.labels.at(i, k);
            ce -= y * std::log(p[k]);
            if (y > 0) h -= y * std::log(y);
        }
        expected += b.weights[i] * (ce - h);
        // Logistic form vs log-softmax; p near 0 loses relative digits to cancellation in 1 - p.
        CHECK(probs.at(i, 0) == doctest::Approx(p0).epsilon(1e-12));
    }
    CHECK(L == doctest::Approx(expected).epsilon(1e-12));  // two formulas, double rounding only
    CHECK(L > 0.0);
}

TEST_CASE("the loss backward matches finite differences for text, images and logit_scale") {
    struct Case {
        std::int64_t N, E;
        double logit_scale, dloss;
    };
    // Batch 1; odd width 13; CLIP-like width 80 at PickScore's scale ln(100); a scaled dloss.
    const Case cases[] = {{1, 13, 1.0, 1.0}, {6, 13, 2.0, 1.0}, {5, 80, 4.6052, 1.0}, {4, 7, 0.5, 0.7}};
    Rng rng(52);
    for (const auto& c : cases) {
        LossBatch b = make_loss_batch(c.N, c.E, c.logit_scale, rng);
        auto loss = [&] {
            T64 probs(Shape{c.N, 2});
            return c.dloss *
                   ops::pickscore_loss_forward<double>(probs, b.text, b.images, b.labels, b.weights, b.logit_scale);
        };
        T64 probs(Shape{c.N, 2});
        ops::pickscore_loss_forward<double>(probs, b.text, b.images, b.labels, b.weights, b.logit_scale);
        T64 dtext = T64::full(b.text.shape(), 4.0), dimages = T64::full(b.images.shape(), 4.0);
        T64 dls0 = T64::full(Shape{1}, 0.375), dls = clone(dls0.view());
        ops::pickscore_loss_backward(dtext, dimages, dls, probs, b.text, b.images, b.labels, b.weights,
                                     b.logit_scale, c.dloss);
        T64 gls = minus(dls, dls0);
        // At scale 100 the loss curves fast: a smaller step keeps the O(h²) truncation small.
        GradCheckOptions opt;
        if (c.logit_scale > 4) opt.step = 1e-6;
        check_gradients("pickscore loss N=" + std::to_string(c.N) + " E=" + std::to_string(c.E),
                        {{"text", b.text, dtext}, {"images", b.images, dimages}, {"logit_scale", b.logit_scale, gls}},
                        loss, rng, opt);
    }
}

TEST_CASE("the loss through L2 normalisation, as the model computes it") {
    Rng rng(53);
    const std::int64_t N = 4, E = 13;
    LossBatch b = make_loss_batch(N, E, 3.0, rng);
    T64 raw_text = randn(Shape{N, E}, rng, 3.0), raw_images = randn(Shape{N, 2, E}, rng, 0.5);
    auto loss = [&] {
        T64 t(raw_text.shape()), im(raw_images.shape()), probs(Shape{N, 2});
        ops::l2_normalize_forward<double>(t, {}, raw_text);
        ops::l2_normalize_forward<double>(im, {}, raw_images);
        return ops::pickscore_loss_forward<double>(probs, t, im, b.labels, b.weights, b.logit_scale);
    };
    T64 t(raw_text.shape()), im(raw_images.shape()), probs(Shape{N, 2});
    Tensor<double> tn(Shape{N}), imn(Shape{N, 2});
    ops::l2_normalize_forward(t, tn, raw_text);
    ops::l2_normalize_forward(im, imn, raw_images);
    ops::pickscore_loss_forward<double>(probs, t, im, b.labels, b.weights, b.logit_scale);
    T64 dt(t.shape()), dim(im.shape()), dls = zeros(Shape{1}), draw_t(t.shape()), draw_im(im.shape());
    ops::pickscore_loss_backward(dt, dim, dls, probs, t, im, b.labels, b.weights, b.logit_scale);
    ops::l2_normalize_backward(draw_t, dt, t, tn);
    ops::l2_normalize_backward(draw_im, dim, im, imn);
    check_gradients("loss through l2_normalize",
                    {{"raw text", raw_text, draw_t}, {"raw images", raw_images, draw_im},
                     {"logit_scale", b.logit_scale, dls}},
                    loss, rng);
}

TEST_CASE("the loss rejects labels that are not probability pairs") {
    Rng rng(54);
    LossBatch b = make_loss_batch(3, 5, 1.0, rng);
    b.labels.at(1, 0) = 0.7;
    b.labels.at(1, 1) = 0.7;
    T64 probs(Shape{3, 2});
    expect_error<Error>(
        [&] { ops::pickscore_loss_forward<double>(probs, b.text, b.images, b.labels, b.weights, b.logit_scale); },
        {"pickscore_loss_forward", "labels[1]"});
}

// ---- AdamW and gradient clipping ---------------------------------------------------------------

TEST_CASE("AdamW follows PyTorch's formula over three hand-unrolled steps") {
    ops::AdamWConfig cfg;
    cfg.lr = 1e-2;
    cfg.weight_decay = 0.3;
    const double b1 = cfg.beta1, b2 = cfg.beta2, eps = cfg.eps, lr = cfg.lr, wd = cfg.weight_decay;
    const double g1 = 0.1, g2 = -0.3, g3 = 0.2;
    // PyTorch's AdamW on one scalar, step by step.
    double p = 0.5;
    p *= 1 - lr * wd;
    double m = (1 - b1) * g1, v = (1 - b2) * g1 * g1;
    p -= lr * (m / (1 - b1)) / (std::sqrt(v / (1 - b2)) + eps);
    const double p_1 = p;
    p *= 1 - lr * wd;
    m = b1 * m + (1 - b1) * g2;
    v = b2 * v + (1 - b2) * g2 * g2;
    p -= lr * (m / (1 - b1 * b1)) / (std::sqrt(v / (1 - b2 * b2)) + eps);
    const double p_2 = p;
    p *= 1 - lr * wd;
    m = b1 * m + (1 - b1) * g3;
    v = b2 * v + (1 - b2) * g3 * g3;
    p -= lr * (m / (1 - b1 * b1 * b1)) / (std::sqrt(v / (1 - b2 * b2 * b2)) + eps);
    const double expected[3] = {p_1, p_2, p};
    const double grads[3] = {g1, g2, g3};

    // In double, and in float with a [2, 3] tensor whose every element runs the same sequence.
    T64 pd = T64::full(Shape{1}, 0.5), gd(Shape{1}), md = zeros(Shape{1}), vd = zeros(Shape{1});
    Tensor<float> pf = Tensor<float>::full(Shape{2, 3}, 0.5f), gf(Shape{2, 3});
    Tensor<float> mf = Tensor<float>::zeros(Shape{2, 3}), vf = Tensor<float>::zeros(Shape{2, 3});
    // Double: the same formula with PyTorch's lerp form for m and another operation order, ulps apart.
    for (int t = 0; t < 3; ++t) {
        gd[0] = grads[t];
        fill(gf.view(), float(grads[t]));
        ops::adamw_step(ops::AdamWSlot<double>{pd, gd, md, vd}, t + 1, cfg);
        std::vector<ops::AdamWSlot<float>> slots{{pf, gf, mf, vf}};
        ops::adamw_step(slots, t + 1, cfg);
        // The two computations differ only in the order of rounding (lerp form for m).
        CHECK(pd[0] == doctest::Approx(expected[t]).epsilon(1e-14));
        // f32 rounding of a few operations on values ~0.5: a few ulps of 6e-8.
        for (float x : pf) CHECK(double(x) == doctest::Approx(expected[t]).epsilon(1e-6));
    }
    CHECK(md[0] == doctest::Approx(m).epsilon(1e-14));
    CHECK(vd[0] == doctest::Approx(v).epsilon(1e-14));
}

TEST_CASE("AdamW with a zero gradient only decays the weights") {
    ops::AdamWConfig cfg;  // PickScore's defaults: lr 3e-6, wd 0.3
    cfg.lr = 1e-3;         // larger, so the decay shows after a few steps
    Rng rng(61);
    T64 p = randn(Shape{3, 13}, rng), p0 = clone(p.view()), g = zeros(Shape{3, 13});
    T64 m = zeros(Shape{3, 13}), v = zeros(Shape{3, 13});
    T64 q = randn(Shape{5}, rng), q0 = clone(q.view()), gq = zeros(Shape{5}), mq = zeros(Shape{5}), vq = zeros(Shape{5});
    std::vector<ops::AdamWSlot<double>> slots{{p, g, m, v}, {q, gq, mq, vq}};
    const double decay = 1 - cfg.lr * cfg.weight_decay;  // five roundings vs pow: a few ulps
    for (int t = 1; t <= 5; ++t) ops::adamw_step(slots, t, cfg);
    for (std::int64_t i = 0; i < p.numel(); ++i)
        CHECK(p[i] == doctest::Approx(p0[i] * std::pow(decay, 5)).epsilon(1e-14));
    for (std::int64_t i = 0; i < q.numel(); ++i)
        CHECK(q[i] == doctest::Approx(q0[i] * std::pow(decay, 5)).epsilon(1e-14));
}

TEST_CASE("AdamW checks its step and its slots") {
    T64 p = zeros(Shape{4}), g = zeros(Shape{4}), m = zeros(Shape{4}), v = zeros(Shape{3});
    ops::AdamWConfig cfg;
    expect_error<Error>([&] { ops::adamw_step(ops::AdamWSlot<double>{p, g, m, m}, 0, cfg); }, {"adamw_step", "step"});
    expect_error([&] { ops::adamw_step(ops::AdamWSlot<double>{p, g, m, v}, 1, cfg); }, {"adamw_step", "[4]", "[3]"});
    cfg.beta2 = 1.0;
    expect_error<Error>([&] { ops::adamw_step(ops::AdamWSlot<double>{p, g, m, m}, 1, cfg); }, {"adamw_step", "betas"});
}

TEST_CASE("clip_grad_norm scales by max_norm / (norm + 1e-6) only when the norm is too large") {
    Rng rng(71);
    Tensor<float> a(Shape{3, 7}), b(Shape{1000});
    fill_normal(a.view(), rng);
    fill_normal(b.view(), rng, 0.0, 0.1);
    double ss = 0;
    for (float x : a) ss += double(x) * double(x);
    for (float x : b) ss += double(x) * double(x);
    const double norm = std::sqrt(ss);  // about sqrt(21 + 10) ≈ 5.6
    std::vector<TensorView<const float>> cviews{a, b};
    // Double sums of the same squares in another order: ulps.
    CHECK(ops::global_grad_norm(cviews) == doctest::Approx(norm).epsilon(1e-14));

    const auto a0 = clone(a.view()), b0 = clone(b.view());
    std::vector<TensorView<float>> views{a, b};
    // Not clipped: returned norm, gradients untouched.
    CHECK(ops::clip_grad_norm(views, norm * 2) == doctest::Approx(norm).epsilon(1e-14));
    CHECK(identical(a.cview(), a0.cview()));
    CHECK(identical(b.cview(), b0.cview()));
    // Clipped to 1: every element times 1 / (norm + 1e-6); the new norm is 1 - O(1e-7).
    CHECK(ops::clip_grad_norm(views, 1.0) == doctest::Approx(norm).epsilon(1e-14));
    const double coef = 1.0 / (norm + 1e-6);
    for (std::int64_t i = 0; i < a.numel(); ++i)
        CHECK(double(a[i]) == doctest::Approx(double(a0[i]) * coef).epsilon(1e-6));  // one f32 rounding
    for (std::int64_t i = 0; i < b.numel(); ++i)
        CHECK(double(b[i]) == doctest::Approx(double(b0[i]) * coef).epsilon(1e-6));
    CHECK(ops::global_grad_norm(cviews) == doctest::Approx(1.0).epsilon(1e-5));  // f32 elements, 1e-6/norm

    // A small norm shows the 1e-6 in the denominator: 0.05 / (0.5 + 1e-6), not 0.1.
    T64 d = zeros(Shape{2});
    d[0] = 0.3;
    d[1] = 0.4;
    std::vector<V64> dviews{d};
    CHECK(ops::clip_grad_norm(dviews, 0.05) == doctest::Approx(0.5).epsilon(1e-15));
    CHECK(d[0] == doctest::Approx(0.3 * 0.05 / (0.5 + 1e-6)).epsilon(1e-14));
    CHECK(d[1] == doctest::Approx(0.4 * 0.05 / (0.5 + 1e-6)).epsilon(1e-14));

    // A non-finite gradient throws and leaves the gradients alone.
    b[17] = std::nanf("");
    const auto a1 = clone(a.view());
    expect_error<Error>([&] { ops::clip_grad_norm(views, 1.0); }, {"clip_grad_norm", "nan"});
    CHECK(identical(a.cview(), a1.cview()));
}

// ---- other element types -----------------------------------------------------------------------

TEST_CASE("f32 and bf16 forwards agree with the double computation") {
    Rng rng(81);
    const std::int64_t N = 3, E = 13;
    LossBatch b = make_loss_batch(N, E, 2.0, rng);
    T64 probs(Shape{N, 2});
    const double L = ops::pickscore_loss_forward<double>(probs, b.text, b.images, b.labels, b.weights, b.logit_scale);
    auto run = [&]<class T>(T, double tol) {
        auto text = to_dtype<T>(b.text.view()), images = to_dtype<T>(b.images.view());
        auto ls = to_dtype<T>(b.logit_scale.view());
        auto labels = to_dtype<float>(b.labels.view()), weights = to_dtype<float>(b.weights.view());
        Tensor<float> pf(Shape{N, 2});
        const double Lf = ops::pickscore_loss_forward<T>(pf, text, images, labels, weights, ls);
        CHECK(Lf == doctest::Approx(L).epsilon(tol));
        // L2 normalisation of unnormalised rows.
        T64 x = randn(Shape{4, E}, rng, 3.0), yd(x.shape());
        ops::l2_normalize_forward<double>(yd, {}, x);
        auto xt = to_dtype<T>(x.view());
        Tensor<T> yt(x.shape());
        ops::l2_normalize_forward<T>(yt, {}, xt);
        CHECK(max_scaled_error(yt.cview(), yd.cview(), tol, tol) <= 1.0);
        // Token embedding: one addition, rounded once to T.
        Tensor<T> tok = to_dtype<T>(randn(Shape{6, E}, rng).view()), pos = to_dtype<T>(randn(Shape{4, E}, rng).view());
        Ids ids(Shape{2, 4});
        for (std::int64_t i = 0; i < 8; ++i) ids[i] = std::int32_t(i % 6);
        Tensor<T> out(Shape{2, 4, E});
        ops::token_embedding_forward(out, ids, tok, pos);
        for (std::int64_t i = 0; i < 8; ++i)
            for (std::int64_t k = 0; k < E; ++k) {
                const float want = float(tok.at(ids[i], k)) + float(pos.at(i % 4, k));
                CHECK(float(out[i * E + k]) == float(T(want)));
            }
    };
    // bf16 rounds each input by up to 2^-9 relative; scores (scale e^2, 13 terms), the loss and
    // each normalised element move by about that much (observed 6e-4 on the loss): 1e-2 is ~5x 2^-9.
    run(bf16{}, 1e-2);
    // f32: inputs rounded at 2^-24, sums of 13 products.
    run(float{}, 1e-5);
}

// ---- shape errors ------------------------------------------------------------------------------

TEST_CASE("shape errors name the op and both shapes") {
    T64 tok = zeros(Shape{10, 8}), pos = zeros(Shape{6, 8}), out = zeros(Shape{2, 5, 8});
    Ids ids = Ids::zeros(Shape{2, 4});
    expect_error([&] { ops::token_embedding_forward(out, ids, tok, pos); },
                 {"token_embedding_forward", "[2, 5, 8]", "[2, 4]"});
    Ids long_ids = Ids::zeros(Shape{2, 7});
    T64 out7 = zeros(Shape{2, 7, 8});
    expect_error([&] { ops::token_embedding_forward(out7, long_ids, tok, pos); },
                 {"token_embedding_forward", "[6, 8]", "[2, 7]"});
    T64 dtok_bad = zeros(Shape{10, 9}), dout = zeros(Shape{2, 4, 8});
    expect_error([&] { ops::token_embedding_backward<double>(dtok_bad, {}, dout, ids); },
                 {"token_embedding_backward", "[10, 9]", "[2, 4, 8]"});

    T64 cp_out = zeros(Shape{2, 5, 8}), patches = zeros(Shape{2, 3, 8}), cls = zeros(Shape{8}), cpos = zeros(Shape{5, 8});
    expect_error([&] { ops::class_position_forward(cp_out, patches, cls, cpos); },
                 {"class_position_forward", "[2, 3, 8]", "[2, 5, 8]"});
    T64 dcls_bad = zeros(Shape{7});
    expect_error([&] { ops::class_position_backward<double>({}, dcls_bad, {}, cp_out); },
                 {"class_position_backward", "[7]", "[2, 5, 8]"});

    T64 x = zeros(Shape{3, 13}), y = zeros(Shape{3, 12});
    expect_error([&] { ops::l2_normalize_forward<double>(y, {}, x); }, {"l2_normalize_forward", "[3, 12]", "[3, 13]"});
    Tensor<double> norm_bad(Shape{4});
    expect_error([&] { ops::l2_normalize_forward(x, norm_bad, x); }, {"l2_normalize_forward", "[4]", "[3, 13]"});
    Tensor<double> norm(Shape{3});
    expect_error([&] { ops::l2_normalize_backward<double>(x, y, x, norm); },
                 {"l2_normalize_backward", "[3, 12]", "[3, 13]"});

    T64 text = zeros(Shape{4, 13}), images = zeros(Shape{4, 2, 12}), labels = zeros(Shape{4, 2});
    T64 weights = zeros(Shape{4}), ls = zeros(Shape{1}), probs = zeros(Shape{4, 2});
    expect_error([&] { ops::pickscore_loss_forward<double>(probs, text, images, labels, weights, ls); },
                 {"pickscore_loss_forward", "[4, 2, 12]", "[4, 13]"});
    T64 images_ok = zeros(Shape{4, 2, 13}), dtext_bad = zeros(Shape{4, 12});
    expect_error([&] {
        ops::pickscore_loss_backward<double>(dtext_bad, {}, {}, probs, text, images_ok, labels, weights, ls);
    },
                 {"pickscore_loss_backward", "[4, 12]", "[4, 13]"});
    T64 ls_bad = zeros(Shape{2});
    expect_error([&] { ops::pickscore_loss_forward<double>(probs, text, images_ok, labels, weights, ls_bad); },
                 {"pickscore_loss_forward", "logit_scale", "[2]"});
}
