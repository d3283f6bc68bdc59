// Core types: dtypes, shapes, tensors and views, the arena, the RNG, the thread pool.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <pickscore/core/arena.hpp>
#include <pickscore/core/dtype.hpp>
#include <pickscore/core/random.hpp>
#include <pickscore/core/tensor.hpp>
#include <pickscore/core/threads.hpp>

using namespace pickscore;

TEST_CASE("bf16 rounds to nearest even and keeps specials") {
    CHECK(float(bf16(1.0f)) == 1.0f);
    // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even mantissa (1.0).
    CHECK(float(bf16(1.0f + 0x1p-8f)) == 1.0f);
    CHECK(float(bf16(1.0f + 0x1p-8f + 0x1p-20f)) == 1.0f + 0x1p-7f);
    CHECK(float(bf16(1.0f + 3 * 0x1p-8f)) == 1.0f + 0x1p-6f);  // tie, odd below: rounds up
    CHECK(std::isinf(float(bf16(std::numeric_limits<float>::infinity()))));
    CHECK(std::isnan(float(bf16(std::numeric_limits<float>::quiet_NaN()))));
    CHECK(float(bf16(-2.5f)) == -2.5f);
    // Every bf16 bit pattern that is a number survives a round trip through float.
    for (std::uint32_t b = 0; b < 0x10000u; ++b) {
        const bf16 h = bf16::from_bits(std::uint16_t(b));
        if (std::isnan(float(h))) continue;
        REQUIRE(bf16(float(h)).bits == h.bits);
    }
}

TEST_CASE("f16 conversion is exact on representable values and rounds to nearest even") {
    for (std::uint32_t b = 0; b < 0x10000u; ++b) {
        const f16 h = f16::from_bits(std::uint16_t(b));
        const float f = float(h);
        if (std::isnan(f)) {
            CHECK(std::isnan(float(f16(f))));
            continue;
        }
        REQUIRE(f16(f).bits == h.bits);
    }
    CHECK(float(f16(65504.0f)) == 65504.0f);
    CHECK(std::isinf(float(f16(65520.0f))));           // halfway to the next binade: overflows
    CHECK(float(f16(65519.0f)) == 65504.0f);
    CHECK(float(f16(0x1p-24f)) == 0x1p-24f);            // smallest subnormal
    CHECK(float(f16(0x1p-25f)) == 0.0f);                // tie with zero: even
    CHECK(float(f16(0x1.8p-25f)) == 0x1p-24f);
    CHECK(float(f16(1.0f + 0x1p-11f)) == 1.0f);         // tie: even
    CHECK(float(f16(1.0f + 3 * 0x1p-11f)) == 1.0f + 0x1p-9f);
}

TEST_CASE("Shape basics and errors") {
    Shape s{2, 3, 4};
    CHECK(s.rank() == 3);
    CHECK(s.numel() == 24);
    CHECK(s[-1] == 4);
    CHECK(s.rows() == 6);
    CHECK(s.str() == "[2, 3, 4]");
    CHECK(s.drop_front() == Shape{3, 4});
    CHECK(s.prepend(5) == Shape{5, 2, 3, 4});
    CHECK_THROWS_AS(s[3], ShapeError);
    CHECK_THROWS_AS((Shape{1, 2, 3, 4, 5, 6, 7}), ShapeError);
    CHECK_THROWS_AS((Shape{2, -1}), ShapeError);
}

TEST_CASE("Tensor owns aligned storage; views slice, select and reshape without copying") {
    Tensor<float> t(Shape{4, 3, 5});
    CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0);
    for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = float(i);
    auto s = t.slice(1, 3);
    CHECK(s.shape() == Shape{2, 3, 5});
    CHECK(s.data() == t.data() + 15);
    CHECK(s.at(0, 0, 0) == 15.0f);
    auto row = t.select(3);
    CHECK(row.shape() == Shape{3, 5});
    CHECK(row.at(2, 4) == 59.0f);
    auto r = t.reshape(Shape{12, 5});
    CHECK(r.at(11, 4) == 59.0f);
    CHECK(t.as_matrix().shape() == Shape{12, 5});
    CHECK_THROWS_AS(t.reshape(Shape{7, 5}), ShapeError);
    CHECK_THROWS_AS(t.slice(2, 5), ShapeError);
    CHECK_THROWS_AS(t.at(0, 3, 0), ShapeError);
    CHECK_THROWS_AS(t.at(0, 0), ShapeError);

    // Moving transfers ownership; the source becomes empty.
    float* p = t.data();
    Tensor<float> u = std::move(t);
    CHECK(u.data() == p);
    CHECK(t.empty());
    CHECK(t.numel() == 0);

    // A const view of a tensor reads the same memory.
    TensorView<const float> c = u;
    CHECK(c.data() == p);
}

TEST_CASE("dtype conversion and copies are explicit and exact where they can be") {
    Rng rng(7);
    Tensor<float> a(Shape{3, 7});
    fill_normal(a.view(), rng);
    auto b = to_dtype<bf16>(a.view());
    auto back = to_dtype<float>(b.view());
    for (std::int64_t i = 0; i < a.numel(); ++i) {
        CHECK(std::abs(back[i] - a[i]) <= std::abs(a[i]) * 0x1p-8f);
        CHECK(back[i] == float(bf16(a[i])));
    }
    auto d = to_dtype<double>(a.view());
    for (std::int64_t i = 0; i < a.numel(); ++i) CHECK(d[i] == double(a[i]));
    auto c = clone(a.view());
    CHECK(c.data() != a.data());
    for (std::int64_t i = 0; i < a.numel(); ++i) CHECK(c[i] == a[i]);
    Tensor<float> wrong(Shape{7, 3});
    CHECK_THROWS_AS(copy<float>(wrong, a), ShapeError);
    try {
        copy<float>(wrong, a);
    } catch (const Error& e) {
        const std::string msg = e.what();
        CHECK(msg.find("copy") != std::string::npos);
        CHECK(msg.find("[7, 3]") != std::string::npos);
        CHECK(msg.find("[3, 7]") != std::string::npos);
    }
}

TEST_CASE("Arena hands out planned, aligned views and refuses to overflow the plan") {
    ArenaPlan plan;
    plan.add<float>(Shape{3, 5});
    plan.add<bf16>(Shape{7});
    plan.add<double>(Shape{2, 2});
    CHECK(plan.bytes() == 64 + 64 + 64);
    Arena<> arena(plan);
    auto a = arena.alloc<float>(Shape{3, 5});
    auto b = arena.alloc<bf16>(Shape{7});
    const auto m = arena.mark();
    auto c = arena.alloc<double>(Shape{2, 2});
    CHECK(reinterpret_cast<std::uintptr_t>(b.data()) % 64 == 0);
    CHECK(reinterpret_cast<std::uintptr_t>(c.data()) % 64 == 0);
    CHECK(static_cast<void*>(b.data()) != static_cast<void*>(a.data()));
    CHECK(arena.used() == plan.bytes());
    CHECK_THROWS_AS(arena.alloc<float>(Shape{1}), Error);
    arena.rewind(m);
    auto c2 = arena.alloc<double>(Shape{2, 2});
    CHECK(c2.data() == c.data());
    arena.reset();
    CHECK(arena.used() == 0);
    CHECK(arena.peak() == plan.bytes());
}

TEST_CASE("Rng is reproducible and its state can be restored") {
    Rng a(42), b(42);
    for (int i = 0; i < 100; ++i) CHECK(a.next_u64() == b.next_u64());
    const auto st = a.state();
    std::vector<double> first;
    for (int i = 0; i < 10; ++i) first.push_back(a.uniform());
    a.set_state(st);
    for (int i = 0; i < 10; ++i) CHECK(a.uniform() == first[std::size_t(i)]);
    // Moments of the normal generator.
    double s = 0, s2 = 0;
    const int n = 200000;
    for (int i = 0; i < n; ++i) {
        const double x = a.normal();
        s += x;
        s2 += x * x;
    }
    CHECK(std::abs(s / n) < 0.01);
    CHECK(std::abs(s2 / n - 1.0) < 0.02);
    for (int i = 0; i < 1000; ++i) CHECK(a.below(7) < 7);
}

TEST_CASE("parallel_for runs every index once and rethrows errors") {
    const int before = num_threads();
    for (int threads : {1, 2, 3}) {
        set_num_threads(threads);
        std::vector<std::atomic<int>> hits(1000);
        parallel_for(1000, [&](std::int64_t i) { hits[std::size_t(i)]++; });
        for (auto& h : hits) CHECK(h.load() == 1);
        CHECK_THROWS_AS(parallel_for(10, [](std::int64_t i) {
                            if (i == 5) throw Error("boom");
                        }),
                        Error);
        // The pool still works after an exception.
        std::atomic<int> count{0};
        parallel_for(64, [&](std::int64_t) { count++; });
        CHECK(count.load() == 64);
    }
    CHECK_THROWS_AS(set_num_threads(0), Error);
    set_num_threads(before);
}

TEST_CASE("a parallel_for inside a parallel_for task runs serially instead of deadlocking") {
    const int before = num_threads();
    set_num_threads(2);
    std::vector<std::atomic<int>> hits(64);
    parallel_for(8, [&](std::int64_t i) {
        parallel_for(8, [&](std::int64_t j) { hits[std::size_t(i * 8 + j)]++; });
    });
    for (auto& h : hits) CHECK(h.load() == 1);
    set_num_threads(before);
}
