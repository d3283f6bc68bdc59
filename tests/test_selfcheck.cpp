// tests/test_selfcheck.cpp — `pickscore selfcheck`: the program as a subprocess (exit status, one
// line per check, every op family in the summary, --filter, usage errors), and the checks of
// examples/cli/selfcheck.hpp in-process, each of which must FAIL when a fault is injected into it.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cli/selfcheck.hpp"
#include "support/cli.hpp"
#include "support/files.hpp"

#ifndef PICKSCORE_CLI_PATH
#error "tests/CMakeLists.txt passes PICKSCORE_CLI_PATH (the pickscore program) to this test"
#endif

namespace {

namespace fs = std::filesystem;
using namespace pickscore;

using Run = test::ProgramRun;

// Runs `pickscore selfcheck ARGS...` with stdout and stderr captured together (in a scratch folder).
Run selfcheck(const std::vector<std::string>& args) {
    test::TempDir dir("selfcheck");
    std::vector<std::string> all{"selfcheck"};
    all.insert(all.end(), args.begin(), args.end());
    return test::run_program(PICKSCORE_CLI_PATH, all, dir.path, "", /*merge_stderr=*/true);
}

std::vector<std::string> lines_with(const std::string& text, const std::string& word) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (line.find(word) != std::string::npos) out.push_back(line);
    return out;
}

// The summary row of a family: "  NAME  pass fail skip".
struct Counts {
    int pass = -1, fail = -1, skip = -1;
};
Counts family_row(const std::string& text, const std::string& family) {
    std::istringstream in(text.substr(text.find("\nsummary\n")));
    for (std::string line; std::getline(in, line);) {
        std::istringstream row(line);
        std::string name;
        Counts c;
        if (row >> name >> c.pass >> c.fail >> c.skip && name == family) return c;
    }
    return {};
}

const char* const families[] = {"gemm",    "layernorm", "softmax", "gelu", "attention", "embedding", "patches",
                                "l2norm", "loss",      "adamw",   "sgemm", "dtype"};

}  // namespace

TEST_CASE("pickscore selfcheck --quick passes and covers every op family") {
    const Run r = selfcheck({"--quick"});
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK(lines_with(r.out, " FAIL ").empty());
    CHECK(lines_with(r.out, "selfcheck: all ").size() == 1);
    for (const char* f : families) {
        CAPTURE(f);
        const Counts c = family_row(r.out, f);
        CHECK(c.pass >= 1);
        CHECK(c.fail == 0);
    }
    // One line per check with its error, tolerance and verdict: the GEMM, GELU and attention ones.
    CHECK(lines_with(r.out, "gemm.forward f32 vs f64").size() == 1);
    CHECK(lines_with(r.out, ".backward f64 vs finite differences").size() >= 10);
    CHECK(lines_with(r.out, "attention.forward+backward f32 CPU fast path").size() == 2);
    CHECK(lines_with(r.out, "gelu_erf.forward").size() == 1);
    CHECK(lines_with(r.out, "quick_gelu.backward").size() == 1);
    CHECK(lines_with(r.out, "bf16 round trip").size() == 1);
    CHECK(lines_with(r.out, "f16 round trip").size() == 2);  // "bf16 round trip" contains it too
    CHECK(lines_with(r.out, "sgemm.scalar vs reference GEMM").size() == 1);
    // A host-only build has no CUDA backend in the CLI: the family is listed as skipped.
    CHECK(family_row(r.out, "cuda").skip == 1);
    CHECK(lines_with(r.out, "  total ").size() == 1);
}

TEST_CASE("pickscore selfcheck reports an injected fault as FAIL with exit status 1") {
    SUBCASE("a gradient check") {
        const Run r = selfcheck({"--inject-fault", "layernorm.backward"});
        INFO(r.out);
        CHECK(r.status == 1);
        const auto failed = lines_with(r.out, " FAIL ");
        REQUIRE(failed.size() == 1);
        CHECK(failed[0].find("layernorm.backward") != std::string::npos);
        CHECK(family_row(r.out, "layernorm").fail == 1);
        CHECK(family_row(r.out, "gemm").fail == 0);
        CHECK(lines_with(r.out, "1 of ").size() == 1);
    }
    SUBCASE("forward checks of one family, with --filter") {
        const Run r = selfcheck({"--filter", "gelu", "--inject-fault", ".forward"});
        INFO(r.out);
        CHECK(r.status == 1);
        CHECK(lines_with(r.out, " FAIL ").size() == 3);  // the three GELU forwards
        CHECK(lines_with(r.out, " PASS ").size() == 3);  // the three backwards
        CHECK(family_row(r.out, "gemm").pass == -1);     // filtered out
    }
}

TEST_CASE("pickscore selfcheck --filter and usage errors") {
    const Run soft = selfcheck({"--filter", "softmax"});
    INFO(soft.out);
    CHECK(soft.status == 0);
    CHECK(lines_with(soft.out, " PASS ").size() == 2);
    CHECK(family_row(soft.out, "softmax").pass == 2);
    CHECK(lines_with(soft.out, "layernorm").empty());

    CHECK(selfcheck({"--bogus"}).status == 2);
    CHECK(selfcheck({"--filter"}).status == 2);
    CHECK(selfcheck({"--filter", "no-such-check"}).status == 2);
    CHECK(selfcheck({"--inject-fault", "no-such-check"}).status == 2);  // a typo must not pass silently
}

// In-process: every check passes as it is and fails with the fault injected, so none of them is
// vacuous (the tolerance is below what the fault changes, the comparison reads the result).
TEST_CASE("every self-check fails when its result is corrupted") {
    int ran = 0;
    for (const auto& check : pickscore_cli::selfcheck::all_checks()) {
        if (!check.run) continue;  // skipped on this machine (an unsupported kernel, no CUDA)
        CAPTURE(check.name);
        pickscore_cli::selfcheck::Ctx clean;
        const auto ok = check.run(clean);
        CHECK(ok.error <= ok.tolerance);
        pickscore_cli::selfcheck::Ctx broken;
        broken.fault = true;
        const auto bad = check.run(broken);
        CHECK(!(bad.error <= bad.tolerance));
        ++ran;
    }
    CHECK(ran >= 30);
}

#ifdef PICKSCORE_CUDA_EMULATION
// This test program links the CUDA emulation (the CLI of a host-only build does not): there the
// `cuda` family runs instead of being skipped, and the case above has checked each of its checks.
TEST_CASE("with a CUDA backend linked, the cuda checks run") {
    int cuda = 0;
    for (const auto& check : pickscore_cli::selfcheck::all_checks())
        if (check.family == "cuda" && check.run) ++cuda;
    CHECK(cuda == 6);
}
#endif
