#include "dynamoe/io/optimizer_state.h"

#include <torch/torch.h>

#include <sstream>

#include "dynamoe/util/error.h"

namespace dynamoe::io {

std::string optimizer_state_bytes(torch::optim::Optimizer& opt) {
  torch::serialize::OutputArchive archive;
  opt.save(archive);
  std::ostringstream os;
  archive.save_to(os);
  return os.str();
}

void load_optimizer_state(torch::optim::Optimizer& opt, const std::string& bytes, const std::string& where) {
  try {
    std::istringstream is(bytes);
    torch::serialize::InputArchive archive;
    archive.load_from(is);
    opt.load(archive);
  } catch (const c10::Error& e) {
    throw Error(str(where, ": cannot load optimizer state: ", e.what_without_backtrace()));
  }
}

}  // namespace dynamoe::io
