// pickscore/collect/scorer.hpp — `pickscore collect --model`: a pickscore::Scorer as the server's
// pickscore-requires: pickscore::collect
// predictor, so that the page can show what PickScore would have chosen after each vote and the
// admin page can report how often people agree with it.
//
//   auto scorer = std::make_shared<pickscore::Scorer>("PickScore_v1/");
//   opt.predictor = collect::make_scorer_predictor(scorer);
//
// The predictor returns each image's scaled score, exp(logit_scale) · cosine, so that the softmax of
// two scores is the model's probability that a person prefers the first (for every preset: the
// ordering is the preset's own, since the scale is positive). An image the Scorer cannot read gets
// NaN and stays unscored. The server calls the predictor from one background thread only, which is
// what a Scorer needs (it is not thread-safe).
#pragma once

#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "../pickscore.hpp"
#include "server.hpp"

namespace pickscore::collect {

inline Predictor make_scorer_predictor(std::shared_ptr<Scorer> scorer) {
    require(scorer != nullptr, "make_scorer_predictor: no scorer");
    return [scorer](const std::string& prompt, const std::vector<std::filesystem::path>& images) {
        std::vector<ImageInput> inputs(images.begin(), images.end());
        const ScoreResult r = scorer->score(prompt, inputs);
        std::vector<double> out;
        for (const ImageScore& s : r.images) out.push_back(s.ok() ? s.scaled : std::numeric_limits<double>::quiet_NaN());
        return out;
    };
}

}  // namespace pickscore::collect
