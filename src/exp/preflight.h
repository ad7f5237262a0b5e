// Everything about a plan that can be checked without computing it, checked before `ikv-eval run`
// creates or touches its results store: model folders (config, tensor headers, tokenizer),
// windows that fit the model, datasets that exist and are non-empty regular files, IntactKV files
// that belong to their model. A bad input is one Error naming the file; nothing is written.
#pragma once
#include <string>

#include "exp/plan.h"

namespace ikv::exp {

void preflight(const Plan& plan, const std::string& data_root);

}  // namespace ikv::exp
