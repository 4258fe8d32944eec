// The one place where model kinds are registered by name.
#include <mutex>

#include "dynamoe/models/cnn.h"
#include "dynamoe/models/mlp.h"
#include "dynamoe/models/moe_mlp.h"

namespace dynamoe::models {

void register_builtin_models() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_model("mlp", [](const config::Config& c, const InputSpec& s) -> Classifier {
      return std::make_shared<MLPClassifierImpl>(c.model, s);
    });
    register_model("cnn", [](const config::Config& c, const InputSpec& s) -> Classifier {
      return std::make_shared<CNNClassifierImpl>(c.model, s);
    });
    register_model("moe_mlp", [](const config::Config& c, const InputSpec& s) -> Classifier {
      return std::make_shared<MoEMLPClassifierImpl>(c, s);
    });
    register_model("moe_cnn", [](const config::Config& c, const InputSpec& s) -> Classifier {
      return std::make_shared<MoECNNClassifierImpl>(c, s);
    });
  });
}

}  // namespace dynamoe::models
