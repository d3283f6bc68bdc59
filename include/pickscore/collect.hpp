// pickscore/collect.hpp — the preference-collection web app (`pickscore collect`) as a library:
// pickscore-requires: pickscore::collect
// the server (collect/server.hpp), the export to training data (collect/export.hpp), and the pieces
// they are made of (database, pool, security, processes). Link the CMake target pickscore::collect
// (cpp-httplib, SQLite 3, OpenSSL's libcrypto, and pickscore::io). collect/scorer.hpp adds a
// pickscore::Scorer as the server's predictor (`--model`).
#pragma once

#include "collect/export.hpp"
#include "collect/server.hpp"
