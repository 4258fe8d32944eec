#pragma once
// The byte tokenizer: id b < 256 is the byte b; id 256 (optional) is end-of-text.
//
// Usage:
//   dynamoe::text::ByteTokenizer tok;            // vocab 257, eot 256
//   tok.encode("hi\n");                          // {104, 105, 10}
//   tok.decode({104, 105, 256});                 // "hi<|endoftext|>"
#include "dynamoe/text/tokenizer.h"

namespace dynamoe::text {

/// Bytes as ids; registered as "byte" (with end-of-text).
class ByteTokenizer final : public Tokenizer {
 public:
  /// With `end_of_text`, id 256 is end-of-text and the vocabulary has 257 ids; without, 256.
  explicit ByteTokenizer(bool end_of_text = true);

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int32_t vocab_size() const override;
  std::string name() const override { return "byte"; }
  std::optional<int32_t> eot_id() const override;

 private:
  bool end_of_text_;
};

}  // namespace dynamoe::text
