// GPT-2 tokenizer files: encoder.json and vocab.bpe are the input's two parts. A pair that loads
// must then encode and decode a fixed sentence.
#include "../fuzz_target.h"

#include "dynamoe/text/gpt2_tokenizer.h"

DYNAMOE_FUZZ_TARGET(gpt2_vocab) {
  using namespace dynamoe;
  const std::vector<std::string> parts = fuzz::split_parts(data, size, 2);
  const std::string enc = fuzz::scratch_file("encoder.json", parts[0]);
  const std::string bpe = fuzz::scratch_file("vocab.bpe", parts[1]);
  fuzz::expect_clean([&] {
    text::Gpt2Tokenizer tok(enc, bpe);
    const std::string sample = "Hello world, it's 123 ok";
    (void)tok.decode(tok.encode(sample));
  });
}
