// pickscore/model.hpp — the CLIP model in one include: configurations, the parameter store, the
// towers and ClipModel (see pickscore/model/clip.hpp).
#pragma once

#include "model/clip.hpp"
#include "model/config.hpp"
#include "model/params.hpp"
#include "model/text.hpp"
#include "model/vision.hpp"
