// Runs both ODR translation units (see odr_unit.hpp) and checks they share one program state.
#include <cstdio>

#include "odr_unit.hpp"

int main() {
    int failures = 0;
    auto check = [&](bool ok, const char* what) {
        if (!ok) {
            std::fprintf(stderr, "odr: %s\n", what);
            ++failures;
        }
    };
    const odr::Report a = odr::unit_a(3);
    const odr::Report b = odr::unit_b(0);
    check(a.threads_seen >= 1, "num_threads() < 1 in unit a");
    check(b.threads_seen == 3, "set_num_threads(3) in unit a was not seen by unit b: two thread pools");
    // The same computation from the same seed in both units gives the same bits.
    check(a.checksum == b.checksum, "unit a and unit b computed different Linear outputs");
    check(a.checksum != 0.0, "the Linear output is all zeros");
    check(a.shape_error && b.shape_error, "a mismatched shape did not throw ShapeError");
    if (failures == 0) std::printf("odr: two units with every header linked and agree\n");
    return failures == 0 ? 0 : 1;
}
