// The find_package consumer of pickscore::collect: opens (creates) the collection database given on
// the command line, sets and reads back a setting, and exits non-zero when it reads something else —
// so SQLite, and the exported link interface around it, really work in the installed package.
#include <cstdio>
#include <exception>
#include <string>

#include <pickscore/collect.hpp>

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: app_collect DATABASE\n");
        return 2;
    }
    try {
        pickscore::collect::Store store(argv[1]);
        store.set_setting("consumer", "find_package");
        const std::string v = store.setting("consumer");
        if (v != "find_package") {
            std::fprintf(stderr, "read back '%s'\n", v.c_str());
            return 1;
        }
        std::printf("collect store ok: %lld active pairs\n", static_cast<long long>(store.active_pairs()));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "app_collect: %s\n", e.what());
        return 1;
    }
    return 0;
}
