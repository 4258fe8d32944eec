#include "dynamoe/text/byte_tokenizer.h"

#include "dynamoe/util/error.h"

namespace dynamoe::text {

namespace {
constexpr int32_t kEotId = 256;
}  // namespace

ByteTokenizer::ByteTokenizer(bool end_of_text) : end_of_text_(end_of_text) {}

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& ids) const {
  const int32_t n = vocab_size();
  std::string out;
  out.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id >= 0 && id < 256) {
      out.push_back(static_cast<char>(id));
    } else if (end_of_text_ && id == kEotId) {
      out += kEndOfText;
    } else {
      throw Error(str("byte tokenizer: token id ", id, " at position ", i,
                      " is out of range; the vocabulary has ", n, " ids (0..", n - 1, ")"));
    }
  }
  return out;
}

int32_t ByteTokenizer::vocab_size() const { return end_of_text_ ? 257 : 256; }

std::optional<int32_t> ByteTokenizer::eot_id() const {
  if (end_of_text_) return kEotId;
  return std::nullopt;
}

}  // namespace dynamoe::text
