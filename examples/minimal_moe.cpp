// minimal_moe.cpp: a top-k Mixture-of-Experts layer and a Fashion-MNIST classifier trained with
// it, in one file that reads top to bottom. It uses only LibTorch and the standard library, and is
// meant as the specification of the idea; dynamoe's MoELayer (kernel "loop", router top_k with
// renormalised weights, ffn experts with GELU, load-balance loss only) computes the same
// function, outputs and gradients (checked by tests/test_minimal_moe.cpp).
//
// Shape legend
//   N  tokens in a batch (here one token per image)
//   D  model width
//   E  experts in a layer
//   K  active experts per token (top-k), K <= E
//   F  hidden width of one expert
//
// The layer, for one token x [D]:
//   z = W_g x                                    gate logits, W_g [E, D], no bias       [E]
//   p = softmax(z)                               router probabilities                   [E]
//   S = the K largest entries of p               ties go to the lower expert index
//   w_i = p_i / sum_{j in S} p_j  for i in S     weights renormalised over S (Mixtral)
//   y = sum_{i in S} w_i FFN_i(x)                FFN_i(x) = W2_i gelu(W1_i x + b1_i) + b2_i
// and for the batch, the Switch load-balance loss
//   aux = E * sum_i f_i P_i,   f_i = (assignments to expert i) / (all N K assignments), a constant,
//                              P_i = mean over tokens of p_i (differentiable).
//
// Usage: minimal_moe [DATA_DIR = data/fashion-mnist] [EPOCHS = 5]
// (the data folder is what `dynamoe data fetch fashion-mnist` writes: four uncompressed IDX files)
// On a machine busy with other work, run with OMP_WAIT_POLICY=PASSIVE: spinning OpenMP threads
// made an epoch 4x slower (35 s instead of 8 s) next to a compiler on 2 cores.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace minimal {

// ---------------------------------------------------------------------------------------------
// One expert: a two-layer feed-forward network, [n, D] -> [n, D].
struct ExpertFFNImpl : torch::nn::Module {
  torch::Tensor w1, b1, w2, b2;  // [F, D], [F], [D, F], [D]

  ExpertFFNImpl(int64_t D, int64_t F) {
    w1 = register_parameter("w1", torch::randn({F, D}) / std::sqrt(double(D)));
    b1 = register_parameter("b1", torch::zeros({F}));
    w2 = register_parameter("w2", torch::randn({D, F}) / std::sqrt(double(F)));
    b2 = register_parameter("b2", torch::zeros({D}));
  }

  torch::Tensor forward(const torch::Tensor& x) {       // [n, D]
    torch::Tensor h = torch::gelu(x.matmul(w1.t()) + b1);  // [n, F]  exact (erf) GELU
    return h.matmul(w2.t()) + b2;                          // [n, D]
  }
};
TORCH_MODULE(ExpertFFN);

// ---------------------------------------------------------------------------------------------
// The MoE layer. Parameters: gate_weight [E, D], experts.<i>.{w1, b1, w2, b2}.
struct MinimalMoEImpl : torch::nn::Module {
  int64_t D, E, K, F;
  torch::Tensor gate_weight;        // [E, D]
  std::vector<ExpertFFN> experts;   // E of them

  MinimalMoEImpl(int64_t dim, int64_t n_experts, int64_t k, int64_t hidden)
      : D(dim), E(n_experts), K(k), F(hidden) {
    TORCH_CHECK(1 <= K && K <= E, "MinimalMoE: need 1 <= k <= n_experts");
    gate_weight = register_parameter("gate_weight", torch::randn({E, D}) / std::sqrt(double(D)));
    torch::nn::ModuleList list;
    for (int64_t i = 0; i < E; ++i) {
      experts.push_back(ExpertFFN(D, F));
      list->push_back(experts.back());
    }
    register_module("experts", list);
  }

  // x [N, D] -> {y [N, D], aux_loss []}
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x) {
    // 1. Gate: one logit per expert, then probabilities.
    torch::Tensor z = x.matmul(gate_weight.t());  // [N, E]
    torch::Tensor p = torch::softmax(z, -1);      // [N, E]

    // 2. Top-k: each token keeps its K most probable experts. A stable descending sort gives
    //    ties to the lower index (torch::topk promises no order among ties: LibTorch 1.13 on CPU
    //    picks expert 1 of p = [0.3, 0.3, 0.2, 0.2] for K = 1).
    torch::Tensor idx = std::get<1>(torch::sort(p.detach(), /*stable=*/true, -1, /*descending=*/true))
                            .narrow(1, 0, K);      // [N, K] expert ids, int64
    torch::Tensor p_top = p.gather(1, idx);        // [N, K]
    torch::Tensor w = p_top / p_top.sum(-1, /*keepdim=*/true);  // [N, K], each row sums to 1

    // 3. Experts: for each expert, gather the tokens that chose it, run it on those rows only,
    //    scale each row by that token's weight for this expert and add it into the output.
    torch::Tensor y = torch::zeros_like(x);        // [N, D]
    for (int64_t i = 0; i < E; ++i) {
      torch::Tensor hits = (idx == i).nonzero();   // [n_i, 2] (token, slot) pairs, token order
      if (hits.size(0) == 0) continue;             // no token chose expert i
      torch::Tensor tok = hits.select(1, 0);       // [n_i] token ids (distinct: top-k picks i once)
      torch::Tensor slot = hits.select(1, 1);      // [n_i] position of i in the token's top-k
      torch::Tensor out = experts[i]->forward(x.index_select(0, tok));   // [n_i, D]
      torch::Tensor wi = w.index({tok, slot}).unsqueeze(1);              // [n_i, 1]
      y = y.index_add(0, tok, out * wi);                                 // [N, D]
    }

    // 4. Switch load-balance loss: E * sum_i f_i P_i. f (the fraction of assignments that went to
    //    each expert) is counted from the discrete choice, so it carries no gradient; the gradient
    //    reaches the gate through P, the mean router probability. It is 1 when perfectly balanced.
    torch::Tensor counts = torch::bincount(idx.flatten(), /*weights=*/{}, E).to(x.scalar_type());  // [E]
    torch::Tensor f = counts / counts.sum();       // [E], sums to 1
    torch::Tensor P = p.mean(0);                   // [E]
    torch::Tensor aux = double(E) * (f * P).sum(); // []
    return {y, aux};
  }
};
TORCH_MODULE(MinimalMoE);

// ---------------------------------------------------------------------------------------------
// The classifier: each 28x28 image is one token of width D; a couple of pre-norm residual MoE
// blocks, then a linear head to 10 classes.
struct ClassifierImpl : torch::nn::Module {
  torch::nn::Linear stem{nullptr}, head{nullptr};
  torch::nn::LayerNorm final_norm{nullptr};
  std::vector<torch::nn::LayerNorm> norms;
  std::vector<MinimalMoE> moes;

  ClassifierImpl(int64_t blocks, int64_t D, int64_t E, int64_t K, int64_t F) {
    stem = register_module("stem", torch::nn::Linear(28 * 28, D));
    for (int64_t b = 0; b < blocks; ++b) {
      norms.push_back(register_module("norm" + std::to_string(b), torch::nn::LayerNorm(std::vector<int64_t>{D})));
      moes.push_back(register_module("moe" + std::to_string(b), MinimalMoE(D, E, K, F)));
    }
    final_norm = register_module("final_norm", torch::nn::LayerNorm(std::vector<int64_t>{D}));
    head = register_module("head", torch::nn::Linear(D, 10));
  }

  // images uint8 [N, 28, 28] -> {logits [N, 10], sum of the layers' aux losses []}
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& images) {
    torch::Tensor x = images.flatten(1).to(torch::kFloat) / 255.0;  // [N, 784] in [0, 1]
    x = (x - 0.2860) / 0.3530;                     // Fashion-MNIST pixel mean and std
    x = stem->forward(x);                          // [N, D]
    torch::Tensor aux = torch::zeros({}, x.options());
    for (size_t b = 0; b < moes.size(); ++b) {
      auto [y, a] = moes[b]->forward(norms[b]->forward(x));
      x = x + y;                                   // [N, D] residual
      aux = aux + a;
    }
    return {head->forward(final_norm->forward(x)), aux};  // [N, 10], []
  }
};
TORCH_MODULE(Classifier);

// ---------------------------------------------------------------------------------------------
// IDX files (the MNIST format): bytes 00 00 <type> <ndims>, then ndims big-endian uint32 sizes,
// then the elements row-major. Only type 0x08 (uint8) is needed here.
inline torch::Tensor read_idx_uint8(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open '" + path + "' (fetch it with: dynamoe data fetch fashion-mnist)");
  unsigned char magic[4];
  if (!in.read(reinterpret_cast<char*>(magic), 4) || magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08)
    throw std::runtime_error("'" + path + "' is not a uint8 IDX file");
  std::vector<int64_t> dims;
  for (int d = 0; d < magic[3]; ++d) {
    unsigned char b[4];
    if (!in.read(reinterpret_cast<char*>(b), 4)) throw std::runtime_error("'" + path + "': truncated header");
    dims.push_back((int64_t(b[0]) << 24) | (int64_t(b[1]) << 16) | (int64_t(b[2]) << 8) | int64_t(b[3]));
  }
  torch::Tensor t = torch::empty(dims, torch::kUInt8);
  if (!in.read(reinterpret_cast<char*>(t.data_ptr<uint8_t>()), t.numel()))
    throw std::runtime_error("'" + path + "': truncated data");
  return t;
}

// {images uint8 [N, 28, 28], labels int64 [N]} for split "train" or "t10k".
inline std::pair<torch::Tensor, torch::Tensor> load_split(const std::string& dir, const std::string& split) {
  torch::Tensor images = read_idx_uint8(dir + "/" + split + "-images-idx3-ubyte");
  torch::Tensor labels = read_idx_uint8(dir + "/" + split + "-labels-idx1-ubyte").to(torch::kLong);
  if (images.dim() != 3 || labels.dim() != 1 || images.size(0) != labels.size(0))
    throw std::runtime_error("'" + dir + "': " + split + " images and labels do not match");
  return {images, labels};
}

// Fraction of correctly classified images, in eval mode and without gradients.
inline double accuracy(Classifier& model, const torch::Tensor& images, const torch::Tensor& labels) {
  torch::NoGradGuard no_grad;
  model->eval();
  int64_t correct = 0;
  for (int64_t s = 0; s < images.size(0); s += 1000) {
    const int64_t n = std::min<int64_t>(1000, images.size(0) - s);
    torch::Tensor logits = model->forward(images.narrow(0, s, n)).first;  // [n, 10]
    correct += logits.argmax(1).eq(labels.narrow(0, s, n)).sum().item<int64_t>();
  }
  model->train();
  return double(correct) / double(images.size(0));
}

}  // namespace minimal

#ifndef MINIMAL_MOE_NO_MAIN
int main(int argc, char** argv) {
  using namespace minimal;
  const std::string dir = argc > 1 ? argv[1] : "data/fashion-mnist";
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 5;
  if (epochs < 1) {
    std::fprintf(stderr, "minimal_moe: EPOCHS must be a positive integer\n");
    return 1;
  }
  torch::set_num_threads(int(std::max(1u, std::thread::hardware_concurrency())));
  torch::manual_seed(0);

  torch::Tensor train_x, train_y, test_x, test_y;
  try {
    std::tie(train_x, train_y) = load_split(dir, "train");  // [60000, 28, 28], [60000]
    std::tie(test_x, test_y) = load_split(dir, "t10k");     // [10000, 28, 28], [10000]
  } catch (const std::exception& e) {
    std::fprintf(stderr, "minimal_moe: %s\n", e.what());
    return 1;
  }

  // Hyperparameters: 2 blocks, D = 64, E = 4 experts of width F = 128, K = 2 active per token.
  const int64_t batch = 128, n_train = train_x.size(0);
  const int64_t total_steps = epochs * (n_train / batch);  // the last partial batch is dropped
  const double aux_coef = 0.01, peak_lr = 2e-3;
  Classifier model(/*blocks=*/2, /*D=*/64, /*E=*/4, /*K=*/2, /*F=*/128);
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(peak_lr).weight_decay(0.01));

  int64_t step = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    torch::Tensor perm = torch::randperm(n_train);  // a fresh shuffle every epoch
    double loss_sum = 0, aux_sum = 0;
    int64_t steps = 0;
    for (int64_t s = 0; s + batch <= n_train; s += batch, ++steps) {
      torch::Tensor ids = perm.narrow(0, s, batch);
      auto [logits, aux] = model->forward(train_x.index_select(0, ids));  // [B, 10], []
      torch::Tensor task = torch::cross_entropy_loss(logits, train_y.index_select(0, ids));
      torch::Tensor loss = task + aux_coef * aux;  // aux: sum over layers, 1 per balanced layer
      // learning rate: linear decay from peak_lr to 0 over the run
      auto& group = static_cast<torch::optim::AdamWOptions&>(opt.param_groups()[0].options());
      group.lr(peak_lr * (1.0 - double(step++) / double(total_steps)));
      opt.zero_grad();
      loss.backward();
      opt.step();
      loss_sum += task.item<double>();
      aux_sum += aux.item<double>();
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("epoch %d  train loss %.4f  load balance %.3f  test accuracy %.4f  (%.1f s)\n", epoch,
                loss_sum / double(steps), aux_sum / double(steps * int64_t(model->moes.size())),
                accuracy(model, test_x, test_y), secs);
  }
  return 0;
}
#endif  // MINIMAL_MOE_NO_MAIN
