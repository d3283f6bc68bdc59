// pickscore/core.hpp — the core types in one include.
#pragma once

#include "core/arena.hpp"
#include "core/device.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/random.hpp"
#include "core/shape.hpp"
#include "core/tensor.hpp"
#include "core/threads.hpp"
