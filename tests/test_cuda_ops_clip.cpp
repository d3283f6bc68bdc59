// The CUDA backend of the CLIP-specific ops — token/class/position embeddings, one-token pooling,
// patchify, L2 normalisation, the PickScore loss and its weights — against the CPU backend, in f32
// and bf16, forward and backward, on the CPU tests' shapes plus the awkward ones (257 tokens,
// odd widths, batch 1, repeated ids, groups long enough to be split, unaligned views).
// Runs under PICKSCORE_CUDA_EMULATION in every build, and on a GPU when one is present
// (tests/cuda/, linked with pickscore::cuda).
//
// How results are compared (docs/design.md):
//   - pure data movement (patchify, pooling, the dpatches copy) and sums of exactly two terms
//     rounded once (the embedding forwards): the same bits as the CPU backend;
//   - f32 outputs: within the worst-case rounding bound of the computation against an f64
//     reference computed from the same (rounded) inputs — (operations + 2)·2⁻²⁴·Σ|terms| per
//     element (Higham's γ_n bound for a sum of n terms, with slack for the final rounding);
//   - bf16 outputs: at most twice as far (max over the tensor) from the f64 reference as the CPU
//     backend's own bf16 result, plus half a bf16 ulp of the largest magnitude: where the CPU's
//     rounding happens to land exactly on the reference, a sum formed in another order may round
//     to the neighbouring bf16 value. A real fault (a wrong index, a missing term) is far larger.
// Outputs are poisoned with NaN before each run, so an element the kernels never wrote shows.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "support/cuda_compare.hpp"
#include <pickscore/core/random.hpp>
#include <pickscore/cuda/runtime.hpp>
#include <pickscore/cuda/storage.hpp>
#include <pickscore/ops/embedding.hpp>
#include <pickscore/ops/loss.hpp>
#include <pickscore/ops/normalize.hpp>
#include <pickscore/ops/patches.hpp>

using namespace pickscore;
namespace cu = pickscore::cuda;

namespace {

using test::as_double;
using test::poisoned;
using test::random_host;
using test::type_name;

constexpr double kEpsF32 = 0x1.0p-24;

// The f64 reference of one output: per element its value, Σ|terms| and the number of rounded
// operations that formed it, and where that form does not fit, an explicit error bound `extra`
// (the f32 tolerance is (ops + 2)·2⁻²⁴·mag + extra).
struct Ref {
    std::vector<double> value, mag, ops, extra;
    explicit Ref(std::size_t n = 0) : value(n, 0.0), mag(n, 0.0), ops(n, 0.0), extra(n, 0.0) {}
    void add(std::size_t i, double term) {
        value[i] += term;
        mag[i] += std::abs(term);
        ops[i] += 1;
    }
};

// The comparison rule of the file's opening comment, for an output of element type Out.
template <class Out>
void check_close(const std::string& what, const std::vector<double>& got, const std::vector<double>& cpu,
                 const Ref& ref) {
    REQUIRE(got.size() == ref.value.size());
    REQUIRE(cpu.size() == ref.value.size());
    if constexpr (std::is_same_v<Out, float>) {
        for (std::size_t i = 0; i < got.size(); ++i) {
            const double tol = (ref.ops[i] + 2.0) * kEpsF32 * ref.mag[i] + ref.extra[i];
            if (!(std::abs(got[i] - ref.value[i]) <= tol)) {
                FAIL_CHECK(what, ": element ", i, " is ", got[i], ", expected ", ref.value[i], " (tolerance ", tol,
                           ")");
                return;
            }
        }
    } else {
        double err = 0, err_cpu = 0, mag = 0;
        for (std::size_t i = 0; i < got.size(); ++i) {
            const double e = std::abs(got[i] - ref.value[i]);
            err = std::isnan(e) ? std::numeric_limits<double>::infinity() : std::max(err, e);
            err_cpu = std::max(err_cpu, std::abs(cpu[i] - ref.value[i]));
            mag = std::max(mag, std::abs(ref.value[i]));
        }
        CHECK_MESSAGE(err <= 2.0 * err_cpu + 0x1.0p-9 * mag, what, ": bf16 error ", err, " vs the CPU's ", err_cpu,
                      " (largest magnitude ", mag, ")");
    }
}

// The same bits (NaN never equals anything, so an unwritten element fails).
inline void check_identical(const std::string& what, const std::vector<double>& got, const std::vector<double>& cpu) {
    REQUIRE(got.size() == cpu.size());
    for (std::size_t i = 0; i < got.size(); ++i)
        if (!(got[i] == cpu[i])) {
            FAIL_CHECK(what, ": element ", i, " is ", got[i], ", the CPU's is ", cpu[i]);
            return;
        }
}

template <class F>
std::string error_of(F&& body) {
    try {
        body();
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

void check_mentions(const std::string& msg, const std::vector<std::string>& parts) {
    CHECK_MESSAGE(!msg.empty(), "no error thrown; expected one mentioning ", parts.front());
    for (const auto& p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, "'", p, "' not in: ", msg);
}

// Restores the synchronise-after-launch switch.
struct SyncCheck {
    bool before = cu::sync_after_launch();
    explicit SyncCheck(bool on) { cu::set_sync_after_launch(on); }
    ~SyncCheck() { cu::set_sync_after_launch(before); }
};

using Ids = Tensor<std::int32_t, Cpu>;

// Ids in [0, V) with repeats: a third of the positions reuse the first id of their row.
Ids random_ids(std::int64_t B, std::int64_t T, std::int64_t V, Rng& rng) {
    Ids ids(Shape{B, T});
    for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t t = 0; t < T; ++t)
            ids[b * T + t] = (t % 3 == 2) ? ids[b * T] : std::int32_t(rng.below(std::uint64_t(V)));
    return ids;
}

}  // namespace

// ---- the host-side grouping of the token-table gradient ----------------------------------------

TEST_CASE("token ids are grouped by id, stably, in segments that cover every position once") {
    Rng rng(1);
    for (std::int64_t n : {1, 7, 100, 5000}) {
        std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
        for (auto& id : ids) id = std::int32_t(rng.below(n < 100 ? 3 : 40));
        const cu::TokenGroups g = cu::group_token_ids(ids.data(), n);
        REQUIRE(g.order.size() == std::size_t(n));
        for (std::size_t k = 1; k < g.order.size(); ++k) {  // sorted by id, positions ascending within an id
            const auto a = g.order[k - 1], b = g.order[k];
            CHECK((ids[std::size_t(a)] < ids[std::size_t(b)] || (ids[std::size_t(a)] == ids[std::size_t(b)] && a < b)));
        }
        std::vector<int> covered(static_cast<std::size_t>(n), 0), slot_used(std::size_t(g.partial_slots), 0);
        for (const auto& s : g.segments) {
            CHECK(s.begin < s.end);
            CHECK(s.end - s.begin <= cu::TokenGroups::segment_length(n));
            for (std::int32_t k = s.begin; k < s.end; ++k) {
                ++covered[std::size_t(k)];
                if (s.target >= 0) CHECK(ids[std::size_t(g.order[std::size_t(k)])] == s.target);
            }
            if (s.target < 0) ++slot_used[std::size_t(-s.target - 1)];
        }
        for (int c : covered) CHECK(c == 1);
        for (int c : slot_used) CHECK(c == 1);
        for (const auto& f : g.finishes) CHECK(f.slots >= 2);
        if (n == 5000) CHECK(!g.finishes.empty());  // 40 ids over 5000 positions: groups of ~125 are split
        CHECK(g.packed().size() == std::size_t(n) + 3 * (g.segments.size() + g.finishes.size()));
    }
}

// ---- token embedding -----------------------------------------------------------------------------

namespace {

struct TokenCase {
    std::int64_t B, T, C, V, P;
};
// The CPU tests' shapes, plus 257 tokens with a vector-friendly width, and few ids over many
// positions (groups long enough to be split into several segments).
const TokenCase kTokenCases[] = {{1, 77, 13, 10, 77}, {2, 5, 8, 3, 7},       {3, 4, 80, 50, 4},
                                 {1, 1, 1, 1, 1},     {2, 257, 24, 40, 257}, {4, 257, 16, 3, 260}};

template <class T>
void token_embedding_matches_cpu() {
    Rng rng(21);
    for (const TokenCase& c : kTokenCases) {
        const std::string tag = std::string("token embedding ") + type_name<T>() + " B=" + std::to_string(c.B) +
                                " T=" + std::to_string(c.T) + " C=" + std::to_string(c.C) + " V=" + std::to_string(c.V);
        const Ids ids = random_ids(c.B, c.T, c.V, rng);
        auto tok = random_host<T>(Shape{c.V, c.C}, rng), pos = random_host<T>(Shape{c.P, c.C}, rng);
        auto g = random_host<T>(Shape{c.B, c.T, c.C}, rng);
        auto dtok0 = random_host<T>(Shape{c.V, c.C}, rng), dpos0 = random_host<T>(Shape{c.P, c.C}, rng);
        const auto gids = cu::to_device(ids.cview());
        const auto gtok = cu::to_device(tok.cview()), gpos = cu::to_device(pos.cview()), gg = cu::to_device(g.cview());

        // forward: two terms rounded once — the CPU's bits, with and without the host mirror
        Tensor<T, Cpu> out(Shape{c.B, c.T, c.C});
        ops::token_embedding_forward<T>(out, ids, tok, pos);
        for (bool mirror : {true, false}) {
            auto gout = poisoned<T>(out.shape());
            ops::token_embedding_forward<T>(gout, gids, gtok, gpos, mirror ? ids.cview() : In<std::int32_t, Cpu>{});
            check_identical(tag + " forward", test::download_double(gout.view()), as_double(out.cview()));
        }

        // backward, accumulating into non-zero gradients
        auto dtok = clone(dtok0.view()), dpos = clone(dpos0.view());
        ops::token_embedding_backward<T>(dtok, dpos, g, ids);
        auto gdtok = cu::to_device(dtok0.cview()), gdpos = cu::to_device(dpos0.cview());
        ops::token_embedding_backward<T>(gdtok, gdpos, gg, gids, ids.cview());
        Ref rtok{std::size_t(c.V * c.C)}, rpos(std::size_t(c.P * c.C));
        const auto G = as_double(g.cview());
        for (std::int64_t i = 0; i < c.V * c.C; ++i) rtok.add(std::size_t(i), cast<double>(dtok0[i]));
        for (std::int64_t i = 0; i < c.P * c.C; ++i) rpos.add(std::size_t(i), cast<double>(dpos0[i]));
        for (std::int64_t i = 0; i < c.B * c.T; ++i)
            for (std::int64_t e = 0; e < c.C; ++e) {
                rtok.add(std::size_t(ids[i] * c.C + e), G[std::size_t(i * c.C + e)]);
                rpos.add(std::size_t((i % c.T) * c.C + e), G[std::size_t(i * c.C + e)]);
            }
        const auto got_tok = test::download_double(gdtok.view());
        check_close<T>(tag + " dtoken", got_tok, as_double(dtok.cview()), rtok);
        check_close<T>(tag + " dpos", test::download_double(gdpos.view()), as_double(dpos.cview()), rpos);

        // deterministic: the same bits again (the emulator shuffles the thread order per launch)
        auto again = cu::to_device(dtok0.cview());
        ops::token_embedding_backward<T>(again, TensorView<T, Cuda>(), gg, gids, ids.cview());
        check_identical(tag + " dtoken, second run", test::download_double(again.view()), got_tok);

        // a frozen table: only dpos, and the ids are not needed (downloaded) at all
        auto only_pos = cu::to_device(dpos0.cview());
        ops::token_embedding_backward<T>(TensorView<T, Cuda>(), only_pos, gg, gids);
        check_identical(tag + " dpos alone", test::download_double(only_pos.view()), test::download_double(gdpos.view()));
        // without the mirror: the ids are downloaded; same bits
        auto no_mirror = cu::to_device(dtok0.cview());
        ops::token_embedding_backward<T>(no_mirror, TensorView<T, Cuda>(), gg, gids);
        check_identical(tag + " dtoken without the mirror", test::download_double(no_mirror.view()), got_tok);
    }
}

}  // namespace

TEST_CASE("token embedding forward/backward on CUDA match the CPU (f32)") { token_embedding_matches_cpu<float>(); }
TEST_CASE("token embedding forward/backward on CUDA match the CPU (bf16)") { token_embedding_matches_cpu<bf16>(); }

TEST_CASE("token ids outside the vocabulary throw on CUDA, naming the id and its position") {
    Tensor<float, Cpu> tok = Tensor<float, Cpu>::zeros(Shape{5, 3}), pos = Tensor<float, Cpu>::zeros(Shape{4, 3});
    Ids ids = Ids::zeros(Shape{2, 4});
    ids.at(1, 2) = 5;
    const auto gtok = cu::to_device(tok.cview()), gpos = cu::to_device(pos.cview());
    const auto gids = cu::to_device(ids.cview());
    Tensor<float, Cuda> out(Shape{2, 4, 3}), dtok(Shape{5, 3}),
        dout = cu::to_device(Tensor<float, Cpu>::zeros(Shape{2, 4, 3}).cview());
    for (bool mirror : {true, false}) {
        const In<std::int32_t, Cpu> m = mirror ? ids.cview() : In<std::int32_t, Cpu>{};
        check_mentions(error_of([&] { ops::token_embedding_forward<float>(out, gids, gtok, gpos, m); }),
                       {"token_embedding_forward", "token id 5", "[1, 2]", "[0, 5)"});
        check_mentions(error_of([&] { ops::token_embedding_backward<float>(dtok, {}, dout, gids, m); }),
                       {"token_embedding_backward", "token id 5", "[1, 2]"});
    }
    // A mirror of another shape is a ShapeError; with PICKSCORE_CUDA_SYNC_CHECK a mirror that
    // differs from the device ids is an Error naming the element.
    Ids wrong(Shape{2, 3});
    CHECK_THROWS_AS(ops::token_embedding_forward<float>(out, gids, gtok, gpos, wrong.cview()), ShapeError);
    Ids other = Ids::zeros(Shape{2, 4});
    {
        SyncCheck sync(true);
        check_mentions(error_of([&] { ops::token_embedding_forward<float>(out, gids, gtok, gpos, other.cview()); }),
                       {"token_embedding_forward", "ids_host differs", "element 6"});
    }
    // On the CPU, a given mirror is compared too.
    Tensor<float, Cpu> hout(Shape{2, 4, 3});
    ids.at(1, 2) = 1;
    check_mentions(error_of([&] { ops::token_embedding_forward<float>(hout, ids, tok, pos, other.cview()); }),
                   {"token_embedding_forward", "ids_host differs", "element 6"});
}

// ---- class + position embedding ------------------------------------------------------------------

namespace {

template <class T>
void class_position_matches_cpu() {
    struct Case {
        std::int64_t B, P, C;
    };
    // The CPU tests' shapes; 257 tokens (256 patches) with a vector width; batch 1 with 1 patch.
    const Case cases[] = {{1, 256, 13}, {3, 4, 80}, {2, 1, 7}, {2, 256, 16}, {1, 1, 8}};
    Rng rng(22);
    for (const Case& c : cases) {
        const std::int64_t S = c.P + 1;
        const std::string tag = std::string("class_position ") + type_name<T>() + " B=" + std::to_string(c.B) +
                                " P=" + std::to_string(c.P) + " C=" + std::to_string(c.C);
        auto patches = random_host<T>(Shape{c.B, c.P, c.C}, rng), cls = random_host<T>(Shape{c.C}, rng);
        auto pos = random_host<T>(Shape{S, c.C}, rng), g = random_host<T>(Shape{c.B, S, c.C}, rng);
        auto dcls0 = random_host<T>(Shape{c.C}, rng), dpos0 = random_host<T>(Shape{S, c.C}, rng);
        const auto gpatches = cu::to_device(patches.cview()), gcls = cu::to_device(cls.cview());
        const auto gpos = cu::to_device(pos.cview()), gg = cu::to_device(g.cview());

        Tensor<T, Cpu> out(Shape{c.B, S, c.C});
        ops::class_position_forward<T>(out, patches, cls, pos);
        auto gout = poisoned<T>(out.shape());
        ops::class_position_forward<T>(gout, gpatches, gcls, gpos);
        check_identical(tag + " forward", test::download_double(gout.view()), as_double(out.cview()));

        Tensor<T, Cpu> dpatches(patches.shape());
        auto dcls = clone(dcls0.view()), dpos = clone(dpos0.view());
        ops::class_position_backward<T>(dpatches, dcls, dpos, g);
        auto gdpatches = poisoned<T>(patches.shape());
        auto gdcls = cu::to_device(dcls0.cview()), gdpos = cu::to_device(dpos0.cview());
        ops::class_position_backward<T>(gdpatches, gdcls, gdpos, gg);
        check_identical(tag + " dpatches", test::download_double(gdpatches.view()), as_double(dpatches.cview()));
        Ref rcls{std::size_t(c.C)}, rpos(std::size_t(S * c.C));
        const auto G = as_double(g.cview());
        for (std::int64_t e = 0; e < c.C; ++e) rcls.add(std::size_t(e), cast<double>(dcls0[e]));
        for (std::int64_t i = 0; i < S * c.C; ++i) rpos.add(std::size_t(i), cast<double>(dpos0[i]));
        for (std::int64_t b = 0; b < c.B; ++b)
            for (std::int64_t i = 0; i < S * c.C; ++i) {
                rpos.add(std::size_t(i), G[std::size_t(b * S * c.C + i)]);
                if (i < c.C) rcls.add(std::size_t(i), G[std::size_t(b * S * c.C + i)]);
            }
        const auto got_cls = test::download_double(gdcls.view());
        check_close<T>(tag + " dcls", got_cls, as_double(dcls.cview()), rcls);
        check_close<T>(tag + " dpos", test::download_double(gdpos.view()), as_double(dpos.cview()), rpos);

        // each output alone (the class gradient without the position gradient takes its own path)
        auto only_cls = cu::to_device(dcls0.cview());
        ops::class_position_backward<T>(TensorView<T, Cuda>(), only_cls, TensorView<T, Cuda>(), gg);
        check_identical(tag + " dcls alone", test::download_double(only_cls.view()), got_cls);
        auto only_patches = poisoned<T>(patches.shape());
        ops::class_position_backward<T>(only_patches, TensorView<T, Cuda>(), TensorView<T, Cuda>(), gg);
        check_identical(tag + " dpatches alone", test::download_double(only_patches.view()), as_double(dpatches.cview()));
    }
}

}  // namespace

TEST_CASE("class_position forward/backward on CUDA match the CPU (f32)") { class_position_matches_cpu<float>(); }
TEST_CASE("class_position forward/backward on CUDA match the CPU (bf16)") { class_position_matches_cpu<bf16>(); }

// ---- one-token pooling ---------------------------------------------------------------------------

namespace {

template <class T>
void select_token_matches_cpu() {
    struct Case {
        std::int64_t B, L, C;
    };
    const Case cases[] = {{1, 257, 13}, {3, 77, 80}, {2, 5, 16}, {1, 1, 1}};
    Rng rng(23);
    for (const Case& c : cases) {
        const std::string tag = std::string("select_token ") + type_name<T>() + " B=" + std::to_string(c.B) +
                                " L=" + std::to_string(c.L) + " C=" + std::to_string(c.C);
        Ids positions(Shape{c.B});
        for (std::int64_t b = 0; b < c.B; ++b)
            positions[b] = std::int32_t(b == 0 ? c.L - 1 : rng.below(std::uint64_t(c.L)));
        auto in = random_host<T>(Shape{c.B, c.L, c.C}, rng), g = random_host<T>(Shape{c.B, c.C}, rng);
        const auto gpositions = cu::to_device(positions.cview());
        const auto gin = cu::to_device(in.cview()), gg = cu::to_device(g.cview());
        Tensor<T, Cpu> out(Shape{c.B, c.C}), din(in.shape());
        ops::select_token_forward<T>(out, in, positions);
        ops::select_token_backward<T>(din, g, positions);
        for (bool mirror : {true, false}) {
            const In<std::int32_t, Cpu> m = mirror ? positions.cview() : In<std::int32_t, Cpu>{};
            auto gout = poisoned<T>(out.shape());
            auto gdin = poisoned<T>(in.shape());
            ops::select_token_forward<T>(gout, gin, gpositions, m);
            ops::select_token_backward<T>(gdin, gg, gpositions, m);
            check_identical(tag + " forward", test::download_double(gout.view()), as_double(out.cview()));
            check_identical(tag + " backward", test::download_double(gdin.view()), as_double(din.cview()));
        }
    }
}

}  // namespace

TEST_CASE("select_token forward/backward on CUDA match the CPU (f32)") { select_token_matches_cpu<float>(); }
TEST_CASE("select_token forward/backward on CUDA match the CPU (bf16)") { select_token_matches_cpu<bf16>(); }

TEST_CASE("a pooling position outside the sequence throws on CUDA, naming the row") {
    Ids positions(Shape{3});
    positions[0] = 0;
    positions[1] = 4;
    positions[2] = 1;
    const auto gpositions = cu::to_device(positions.cview());
    Tensor<float, Cuda> in(Shape{3, 4, 2}), out(Shape{3, 2}), dout(Shape{3, 2}), din(Shape{3, 4, 2});
    for (bool mirror : {true, false}) {
        const In<std::int32_t, Cpu> m = mirror ? positions.cview() : In<std::int32_t, Cpu>{};
        check_mentions(error_of([&] { ops::select_token_forward<float>(out, in, gpositions, m); }),
                       {"select_token_forward", "positions[1] = 4", "[0, 4)"});
        check_mentions(error_of([&] { ops::select_token_backward<float>(din, dout, gpositions, m); }),
                       {"select_token_backward", "positions[1] = 4"});
    }
}

// ---- patches ---------------------------------------------------------------------------------------

namespace {

template <class T>
void patches_match_cpu() {
    struct Case {
        std::int64_t B, C, H, W, p;
    };
    // The CPU tests' shapes (p = 14, 2, 1), ViT-B/16's patch (the widest chunks) and 4 channels.
    const Case cases[] = {{2, 3, 28, 42, 14}, {1, 3, 2, 4, 2},    {2, 3, 6, 2, 2},
                          {1, 3, 3, 3, 1},    {1, 3, 32, 48, 16}, {2, 4, 16, 8, 8}};
    Rng rng(24);
    for (const Case& c : cases) {
        const std::string tag = std::string("patchify ") + type_name<T>() + " " + Shape{c.B, c.C, c.H, c.W}.str() +
                                " p=" + std::to_string(c.p);
        const Shape rows{c.B, (c.H / c.p) * (c.W / c.p), c.C * c.p * c.p};
        auto image = random_host<T>(Shape{c.B, c.C, c.H, c.W}, rng), g = random_host<T>(rows, rng);
        Tensor<T, Cpu> out(rows), dimage(image.shape());
        ops::patchify<T>(out, image, c.p);
        ops::unpatchify<T>(dimage, g, c.p);
        // aligned, and one element off (the chunks fall back to single elements)
        for (std::int64_t offset : {0, 1}) {
            auto big_image = poisoned<T>(Shape{image.numel() + 1}), big_rows = poisoned<T>(Shape{out.numel() + 1});
            TensorView<T, Cuda> gimage(big_image.data() + offset, image.shape()), gout(big_rows.data() + offset, rows);
            cu::copy<T>(gimage, image.cview());
            ops::patchify<T>(gout, gimage, c.p);
            check_identical(tag + " offset " + std::to_string(offset), test::download_double(gout), as_double(out.cview()));
            cu::copy<T>(gout, g.cview());
            cu::copy<T>(gimage, poisoned<T>(image.shape()).cview());
            ops::unpatchify<T>(gimage, gout, c.p);
            check_identical(tag + " unpatchify offset " + std::to_string(offset), test::download_double(gimage),
                            as_double(dimage.cview()));
        }
    }
}

}  // namespace

TEST_CASE("patchify/unpatchify on CUDA match the CPU (f32)") { patches_match_cpu<float>(); }
TEST_CASE("patchify/unpatchify on CUDA match the CPU (bf16)") { patches_match_cpu<bf16>(); }

// ---- L2 normalisation ------------------------------------------------------------------------------

namespace {

template <class T>
void l2_normalize_matches_cpu() {
    // The CPU tests' shapes (batch 1, odd width, CLIP's embedding width, rank 3 with width 80, rank
    // 1), 257 rows, and a row of zeros in every case with more than one row.
    const Shape shapes[] = {Shape{1, 13}, Shape{4, 1024}, Shape{2, 3, 80}, Shape{7}, Shape{257, 24}};
    Rng rng(25);
    for (const Shape& s : shapes) {
        const std::int64_t R = s.rows(), C = s.last();
        const std::string tag = std::string("l2_normalize ") + type_name<T>() + " " + s.str();
        auto in = random_host<T>(s, rng, 3.0), g = random_host<T>(s, rng);
        if (R > 1)
            for (std::int64_t e = 0; e < C; ++e) in[C + e] = cast<T>(0.0);
        Tensor<T, Cpu> out(s), din(s);
        Tensor<float, Cpu> norm(Shape{R});
        ops::l2_normalize_forward<T>(out, norm, in);
        ops::l2_normalize_backward<T>(din, g, out, norm);

        const auto gin = cu::to_device(in.cview()), gg = cu::to_device(g.cview());
        auto gout = poisoned<T>(s);
        auto gnorm = poisoned<float>(Shape{R});
        ops::l2_normalize_forward<T>(gout, gnorm, gin);
        // the backward from the CPU's saved out and norm, so both backwards see the same inputs
        const auto cout = cu::to_device(out.cview());
        const auto cnorm = cu::to_device(norm.cview());
        auto gdin = poisoned<T>(s);
        ops::l2_normalize_backward<T>(gdin, gg, cout, cnorm);

        const auto X = as_double(in.cview()), G = as_double(g.cview()), Y = as_double(out.cview());
        const auto N = as_double(norm.cview());
        Ref rout{std::size_t(R * C)}, rnorm{std::size_t(R)}, rdin{std::size_t(R * C)};
        for (std::int64_t r = 0; r < R; ++r) {
            double ss = 0, yg = 0, yg_mag = 0;
            for (std::int64_t e = 0; e < C; ++e) {
                const std::size_t i = std::size_t(r * C + e);
                ss += X[i] * X[i];
                yg += Y[i] * G[i];
                yg_mag += std::abs(Y[i] * G[i]);
            }
            const double n = std::sqrt(ss), ops_count = double(C) + 4;
            rnorm.value[std::size_t(r)] = n;
            rnorm.mag[std::size_t(r)] = n;
            rnorm.ops[std::size_t(r)] = ops_count;
            for (std::int64_t e = 0; e < C; ++e) {
                const std::size_t i = std::size_t(r * C + e);
                rout.value[i] = n > 0 ? X[i] / n : 0.0;
                rout.mag[i] = std::abs(rout.value[i]);
                rout.ops[i] = ops_count;
                // relative to the saved norm N[r] (an input of the backward, as on the CPU)
                rdin.value[i] = N[std::size_t(r)] > 0 ? (G[i] - Y[i] * yg) / N[std::size_t(r)] : 0.0;
                rdin.mag[i] =
                    N[std::size_t(r)] > 0 ? (std::abs(G[i]) + std::abs(Y[i]) * yg_mag) / N[std::size_t(r)] : 0.0;
                rdin.ops[i] = ops_count + 2;
            }
        }
        check_close<T>(tag + " out", test::download_double(gout.view()), as_double(out.cview()), rout);
        check_close<float>(tag + " norm", test::download_double(gnorm.view()), as_double(norm.cview()), rnorm);
        check_close<T>(tag + " din", test::download_double(gdin.view()), as_double(din.cview()), rdin);

        // without the saved norm, and one element off 16-byte alignment (the scalar path)
        auto big = poisoned<T>(Shape{in.numel() + 1});
        TensorView<T, Cuda> unaligned(big.data() + 1, s);
        ops::l2_normalize_forward<T>(unaligned, TensorView<float, Cuda>(), gin);
        check_close<T>(tag + " out (unaligned, no norm)", test::download_double(unaligned), as_double(out.cview()), rout);
    }
}

}  // namespace

TEST_CASE("l2_normalize forward/backward on CUDA match the CPU (f32)") { l2_normalize_matches_cpu<float>(); }
TEST_CASE("l2_normalize forward/backward on CUDA match the CPU (bf16)") { l2_normalize_matches_cpu<bf16>(); }

// ---- the PickScore loss and its weights -------------------------------------------------------------

namespace {

struct LossInputs {
    Tensor<float, Cpu> labels, weights, counts;
};

// Labels cycling win / loss / tie, unequal counts and their weights (computed on the CPU).
LossInputs make_labels(std::int64_t N) {
    LossInputs in{Tensor<float, Cpu>(Shape{N, 2}), Tensor<float, Cpu>(Shape{N}), Tensor<float, Cpu>(Shape{N})};
    for (std::int64_t i = 0; i < N; ++i) {
        const std::int64_t kind = i % 3;
        in.labels.at(i, 0) = kind == 0 ? 1.0f : kind == 1 ? 0.0f : 0.5f;
        in.labels.at(i, 1) = 1.0f - in.labels.at(i, 0);
        in.counts[i] = float(1 + (i * 7) % 5);
    }
    ops::preference_weights<float>(in.weights, in.counts);
    return in;
}

// Rows of unit length (as the loss expects), in T.
template <class T>
Tensor<T, Cpu> unit_rows(Shape shape, Rng& rng) {
    Tensor<double, Cpu> x(shape), y(shape);
    for (auto& v : x) v = rng.normal();
    ops::l2_normalize_forward<double>(y, {}, x);
    Tensor<T, Cpu> t(shape);
    for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = cast<T>(y[i]);
    return t;
}

template <class T>
void loss_matches_cpu() {
    struct Case {
        std::int64_t N, E;
        double logit_scale, dloss;
    };
    // The CPU tests' cases (batch 1; odd width 13; width 80 at PickScore's ln 100; a scaled dloss),
    // and CLIP-H's embedding width 1024.
    const Case cases[] = {
        {1, 13, 1.0, 1.0}, {6, 13, 2.0, 1.0}, {5, 80, 4.6052, 1.0}, {4, 7, 0.5, 0.7}, {9, 1024, 4.6052, 1.0}};
    Rng rng(26);
    for (const Case& c : cases) {
        const std::string tag =
            std::string("pickscore loss ") + type_name<T>() + " N=" + std::to_string(c.N) + " E=" + std::to_string(c.E);
        auto text = unit_rows<T>(Shape{c.N, c.E}, rng), images = unit_rows<T>(Shape{c.N, 2, c.E}, rng);
        const LossInputs li = make_labels(c.N);
        Tensor<T, Cpu> ls(Shape{1});
        ls[0] = cast<T>(c.logit_scale);
        auto dtext0 = random_host<T>(text.shape(), rng), dls0 = random_host<T>(Shape{1}, rng);

        Tensor<float, Cpu> probs(Shape{c.N, 2});
        const double L = ops::pickscore_loss_forward<T>(probs, text, images, li.labels, li.weights, ls);
        Tensor<T, Cpu> dtext(text.shape()), dimages(images.shape());
        auto dls = clone(dls0.view());
        ops::pickscore_loss_backward<T>(dtext, dimages, dls, probs, text, images, li.labels, li.weights, ls, c.dloss);

        const auto gtext = cu::to_device(text.cview()), gimages = cu::to_device(images.cview());
        const auto glabels = cu::to_device(li.labels.cview()), gweights = cu::to_device(li.weights.cview());
        const auto gls = cu::to_device(ls.cview());
        auto gloss = poisoned<float>(Shape{1});
        auto gprobs = poisoned<float>(Shape{c.N, 2});
        ops::pickscore_loss_forward<T>(gloss, gprobs, gtext, gimages, glabels, gweights, gls);
        // the backward from the CPU's probabilities, so both backwards see the same inputs
        const auto cprobs = cu::to_device(probs.cview());
        auto gdtext = poisoned<T>(text.shape()), gdimages = poisoned<T>(images.shape());
        auto gdls = cu::to_device(dls0.cview());
        ops::pickscore_loss_backward<T>(gdtext, gdimages, gdls, cprobs, gtext, gimages, glabels, gweights, gls,
                                        c.dloss);

        // f64 reference from the same inputs
        const auto X = as_double(text.cview()), I = as_double(images.cview());
        const double scale = std::exp(cast<double>(ls[0]));
        const std::size_t N = std::size_t(c.N), E = std::size_t(c.E);
        Ref rloss(1), rprobs(2 * N), rdtext(N * E), rdimages(2 * N * E), rdls(1);
        rdls.add(0, cast<double>(dls0[0]));
        for (std::size_t i = 0; i < N; ++i) {
            double s[2], smag[2];
            for (std::size_t k = 0; k < 2; ++k) {
                double d = 0, m = 0;
                for (std::size_t e = 0; e < E; ++e) {
                    d += X[i * E + e] * I[(2 * i + k) * E + e];
                    m += std::abs(X[i * E + e] * I[(2 * i + k) * E + e]);
                }
                s[k] = scale * d;
                smag[k] = scale * m;
            }
            const double p0 = 1.0 / (1.0 + std::exp(s[1] - s[0])), p[2] = {p0, 1.0 / (1.0 + std::exp(s[0] - s[1]))};
            // Error bounds: a score is a length-E dot product times the scale, so its error is at
            // most δs_k = (E + 2)·2⁻²⁴·scale·Σ|t·im_k|. That moves p_k by at most p0·p1·(δs0 + δs1)
            // and log p_k by at most δs0 + δs1; the shifted log-softmax, its exp and log (a few ulps
            // each on the GPU) add a few roundings of |s0 - s1| and of the result.
            const double ds = (double(E) + 2) * kEpsF32 * (smag[0] + smag[1]);
            const double w = li.weights[std::int64_t(i)];
            double kl = 0, kl_mag = 0;
            for (std::size_t k = 0; k < 2; ++k) {
                const double y = li.labels[std::int64_t(2 * i + k)];
                if (y > 0) {
                    kl += y * (std::log(y) - std::log(p[k]));
                    kl_mag += y * (std::abs(std::log(y)) + std::abs(std::log(p[k])));
                }
                rprobs.value[2 * i + k] = p[k];
                rprobs.extra[2 * i + k] = p0 * p[1] * ds + 16 * kEpsF32 * p[k] * (8 + std::abs(s[0] - s[1]));
            }
            rloss.value[0] += w * kl;
            rloss.mag[0] += std::abs(w * kl);
            rloss.extra[0] += w * (ds + 16 * kEpsF32 * (8 + std::abs(s[0] - s[1]) + kl_mag));
            // backward: g_k = dloss·w·(p_k - y_k), from the CPU's saved probabilities
            double g[2];
            for (std::size_t k = 0; k < 2; ++k)
                g[k] = c.dloss * w * (double(probs[std::int64_t(2 * i + k)]) - li.labels[std::int64_t(2 * i + k)]);
            for (std::size_t e = 0; e < E; ++e) {
                const std::size_t t = i * E + e;
                rdtext.value[t] = scale * (g[0] * I[2 * i * E + e] + g[1] * I[(2 * i + 1) * E + e]);
                rdtext.mag[t] = scale * (std::abs(g[0] * I[2 * i * E + e]) + std::abs(g[1] * I[(2 * i + 1) * E + e]));
                rdtext.ops[t] = 8;  // g (3 roundings), the scale, two products and a sum
                for (std::size_t k = 0; k < 2; ++k) {
                    rdimages.value[(2 * i + k) * E + e] = scale * g[k] * X[t];
                    rdimages.mag[(2 * i + k) * E + e] = std::abs(scale * g[k] * X[t]);
                    rdimages.ops[(2 * i + k) * E + e] = 8;
                }
            }
            for (std::size_t k = 0; k < 2; ++k) {  // Σ g_k s_k: the scores' errors, then the sum's
                rdls.value[0] += g[k] * s[k];
                rdls.mag[0] += std::abs(g[k] * s[k]);
                rdls.extra[0] += std::abs(g[k]) * (double(E) + 2) * kEpsF32 * smag[k];
            }
        }
        rloss.ops[0] = double(N) + 2;
        rdls.ops[0] = double(N) + 6;
        // the loss and the probabilities are f32 whatever T is
        const std::vector<double> cpu_loss{L};
        check_close<float>(tag + " loss", test::download_double(gloss.view()), cpu_loss, rloss);
        check_close<float>(tag + " probs", test::download_double(gprobs.view()), as_double(probs.cview()), rprobs);
        check_close<T>(tag + " dtext", test::download_double(gdtext.view()), as_double(dtext.cview()), rdtext);
        check_close<T>(tag + " dimages", test::download_double(gdimages.view()), as_double(dimages.cview()), rdimages);
        check_close<T>(tag + " dlogit_scale", test::download_double(gdls.view()), as_double(dls.cview()), rdls);

        // the double-returning form on CUDA (it waits), and the buffer form on the CPU
        Tensor<float, Cuda> no_probs;
        const double gL = ops::pickscore_loss_forward<T>(no_probs, gtext, gimages, glabels, gweights, gls);
        CHECK(gL == test::download_double(gloss.view())[0]);
        Tensor<float, Cpu> cpu_buffer(Shape{1});
        ops::pickscore_loss_forward<T>(cpu_buffer, Tensor<float, Cpu>(), text, images, li.labels, li.weights, ls);
        CHECK(cpu_buffer[0] == float(L));

        // each gradient alone; dtext0 non-zero shows dtext is written, not accumulated
        auto only_text = cu::to_device(dtext0.cview());
        ops::pickscore_loss_backward<T>(only_text, TensorView<T, Cuda>(), TensorView<T, Cuda>(), cprobs, gtext, gimages,
                                        glabels, gweights, gls, c.dloss);
        check_identical(tag + " dtext alone", test::download_double(only_text.view()), test::download_double(gdtext.view()));
        auto only_ls = cu::to_device(dls0.cview());
        ops::pickscore_loss_backward<T>(TensorView<T, Cuda>(), TensorView<T, Cuda>(), only_ls, cprobs, gtext, gimages,
                                        glabels, gweights, gls, c.dloss);
        check_identical(tag + " dlogit_scale alone", test::download_double(only_ls.view()), test::download_double(gdls.view()));
    }
}

}  // namespace

TEST_CASE("the PickScore loss forward/backward on CUDA match the CPU (f32)") { loss_matches_cpu<float>(); }
TEST_CASE("the PickScore loss forward/backward on CUDA match the CPU (bf16)") { loss_matches_cpu<bf16>(); }

TEST_CASE("preference weights on CUDA match the CPU; an invalid count makes them NaN") {
    for (std::int64_t N : {1, 5, 300}) {
        const LossInputs li = make_labels(N);
        auto gw = poisoned<float>(Shape{N});
        ops::preference_weights<float>(gw, cu::to_device(li.counts.cview()));
        const auto got = test::download_double(gw.view());
        double total = 0;
        for (std::int64_t i = 0; i < N; ++i) total += 1.0 / li.counts[i];
        Ref ref{std::size_t(N)};
        for (std::int64_t i = 0; i < N; ++i) {
            ref.value[std::size_t(i)] = (1.0 / li.counts[i]) / total;
            ref.mag[std::size_t(i)] = ref.value[std::size_t(i)];
            ref.ops[std::size_t(i)] = 2;  // the sum is in double; the division and the rounding to float
        }
        check_close<float>("preference weights N=" + std::to_string(N), got, as_double(li.weights.cview()), ref);
    }
    Tensor<float, Cpu> counts(Shape{3});
    counts[0] = 2;
    counts[1] = 0;
    counts[2] = 1;
    auto gw = poisoned<float>(Shape{3});
    ops::preference_weights<float>(gw, cu::to_device(counts.cview()));
    for (double w : test::download_double(gw.view())) CHECK(std::isnan(w));
}

TEST_CASE("on CUDA an invalid label pair is not checked but makes the loss and its example's gradients NaN") {
    Rng rng(27);
    const std::int64_t N = 3, E = 8;
    auto text = unit_rows<float>(Shape{N, E}, rng), images = unit_rows<float>(Shape{N, 2, E}, rng);
    LossInputs li = make_labels(N);
    li.labels.at(1, 0) = 0.7f;
    li.labels.at(1, 1) = 0.7f;
    Tensor<float, Cpu> ls = Tensor<float, Cpu>::zeros(Shape{1});
    // the CPU throws, naming the example
    Tensor<float, Cpu> probs(Shape{N, 2});
    check_mentions(
        error_of([&] { ops::pickscore_loss_forward<float>(probs, text, images, li.labels, li.weights, ls); }),
        {"pickscore_loss_forward", "labels[1]"});
    const auto gtext = cu::to_device(text.cview()), gimages = cu::to_device(images.cview());
    const auto glabels = cu::to_device(li.labels.cview()), gweights = cu::to_device(li.weights.cview());
    const auto gls = cu::to_device(ls.cview());
    Tensor<float, Cuda> loss(Shape{1}), gprobs(Shape{N, 2}), dtext(Shape{N, E});
    ops::pickscore_loss_forward<float>(loss, gprobs, gtext, gimages, glabels, gweights, gls);
    CHECK(std::isnan(test::download_double(loss.view())[0]));
    ops::pickscore_loss_backward<float>(dtext, TensorView<float, Cuda>(), TensorView<float, Cuda>(), gprobs, gtext,
                                        gimages, glabels, gweights, gls);
    const auto d = test::download_double(dtext.view());
    for (std::int64_t i = 0; i < N; ++i)
        for (std::int64_t e = 0; e < E; ++e) CHECK(std::isnan(d[std::size_t(i * E + e)]) == (i == 1));
}

TEST_CASE("the loss buffer must have shape [1]") {
    Tensor<float, Cpu> loss(Shape{2}), probs(Shape{1, 2}), text(Shape{1, 4}), images(Shape{1, 2, 4}),
        labels(Shape{1, 2}), weights(Shape{1}), ls(Shape{1});
    CHECK_THROWS_AS(ops::pickscore_loss_forward<float>(loss, probs, text, images, labels, weights, ls), ShapeError);
}
