#pragma once
// The fine-tuning part of a results page (dynamoe results) for sweeps of model.kind = finetune
// runs (train/finetune_trainer.h): per-domain perplexity and multiple-choice accuracy of each
// configuration next to the frozen base model's, and for mixtures of LoRA experts the routing:
// per adapted projection the fraction of tokens sent to every expert, active experts per token,
// the domain/expert mutual information, and each domain's favourite expert with its share.
#include <string>

#include "dynamoe/report/run_data.h"

namespace dynamoe::report {

/// Markdown sections (## level), or "" when no finished run of `data` is a fine-tuning run.
std::string finetune_section(const SweepData& data);

}  // namespace dynamoe::report
