#pragma once
// Projection: a linear layer with an adapter attach point, used by every model whose linear
// layers can be fine-tuned with adapters (the HF LLaMA decoder, the dense feed-forward and
// attention of dynamoe's TransformerLM). An Adapter's output is ADDED to the base map:
//
//   y = x W^T (+ b) (+ adapter(x))        weight [out, in], bias [out]
//
//   for (auto& [name, p] : named_projections(*model))   // "blocks.0.fc1", "model.layers.0.mlp.up_proj"
//     if (name.find("fc1") != std::string::npos) p->set_adapter(my_lora);
// LoRA and the mixtures of LoRA experts (src/dynamoe/adapters) derive from Adapter; their
// parameters register under the projection as `adapter.*`.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace dynamoe::models {

/// The adapter attach point of a Projection: forward(x) [.., in] returns a delta [.., out].
class Adapter : public torch::nn::Module {
 public:
  /// x [.., in] -> delta [.., out].
  virtual at::Tensor forward(const at::Tensor& x) = 0;
};

/// An Adapter made from a function (no parameters of its own): for hooks and tests.
class FunctionAdapter : public Adapter {
 public:
  explicit FunctionAdapter(std::function<at::Tensor(const at::Tensor&)> fn) : fn_(std::move(fn)) {}
  at::Tensor forward(const at::Tensor& x) override { return fn_(x); }

 private:
  std::function<at::Tensor(const at::Tensor&)> fn_;
};

/// How a Projection's weights start.
enum class ProjectionInit {
  kNormal,  ///< weight ~ N(0, 0.02), bias 0 (Hugging Face LLaMA; the loader overwrites them)
  kLinear,  ///< torch.nn.Linear's: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)), drawn in the same order
};

/// y = x W^T (+ b) (+ adapter(x)). Parameters: weight [out, in], bias [out] (when `bias`);
/// `adapter.*` once one is attached.
class ProjectionImpl : public torch::nn::Module {
 public:
  ProjectionImpl(int64_t in_features, int64_t out_features, bool bias, ProjectionInit init = ProjectionInit::kNormal);
  /// x [.., in] -> [.., out].
  at::Tensor forward(const at::Tensor& x);
  /// Attaches (or replaces) the adapter whose output is added to the base map.
  void set_adapter(std::shared_ptr<Adapter> adapter);
  /// Detaches the adapter: the projection is the plain linear map again.
  void clear_adapter();
  /// The attached adapter (nullptr: none).
  const std::shared_ptr<Adapter>& adapter() const { return adapter_; }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

  at::Tensor weight;  ///< [out, in]
  at::Tensor bias;    ///< [out], undefined without bias

 private:
  int64_t in_, out_;
  std::shared_ptr<Adapter> adapter_;
};
TORCH_MODULE(Projection);

/// Every Projection inside `model` with its module path ("blocks.0.fc1"), in registration
/// order; projections inside an adapter are skipped.
std::vector<std::pair<std::string, Projection>> named_projections(const torch::nn::Module& model);

}  // namespace dynamoe::models
