#pragma once
// Tokenizers for language modelling: bytes <-> token ids, and the registry of tokenizer kinds.
//
//   name    vocab    end-of-text   what an id is
//   "byte"  257      256           ids 0..255 are the bytes themselves
//   "gpt2"  50,257   50256         GPT-2's byte-level BPE (encoder.json + vocab.bpe in `dir`,
//                                  fetched by data::fetch_gpt2_vocab into data/gpt2/)
//
// Contract shared by every kind:
//   - encode accepts any byte string (invalid UTF-8 and NUL bytes included) and
//     decode(encode(s)) == s, byte for byte;
//   - encode never produces the end-of-text id: the literal text "<|endoftext|>" is ordinary
//     text (as in gpt-3-encoder); the caller inserts eot_id() between documents;
//   - decode turns the end-of-text id into the literal text "<|endoftext|>" and throws
//     dynamoe::Error naming any id outside [0, vocab_size()).
//   - encode and decode are const and safe to call from several threads at once.
//
// Usage:
//   auto tok = dynamoe::text::make_tokenizer("gpt2", "data/gpt2");
//   std::vector<int32_t> ids = tok->encode("Hello world");  // {15496, 995}
//   std::string back = tok->decode(ids);                      // "Hello world"
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dynamoe::text {

/// Maps bytes to token ids and back. Implementations: ByteTokenizer, Gpt2Tokenizer.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  /// The token ids of `text`, any bytes. Never contains eot_id().
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;

  /// The bytes the ids stand for (eot_id() becomes "<|endoftext|>"). Throws dynamoe::Error naming
  /// the first id outside [0, vocab_size()) and the vocabulary size.
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;

  /// Number of ids: every id is in [0, vocab_size()).
  virtual int32_t vocab_size() const = 0;

  /// The registry name of this kind ("byte", "gpt2").
  virtual std::string name() const = 0;

  /// The end-of-text id, if the vocabulary has one.
  virtual std::optional<int32_t> eot_id() const = 0;
};

/// The text that decode produces for the end-of-text id.
inline constexpr std::string_view kEndOfText = "<|endoftext|>";

/// Registered tokenizer names, in registry order: {"byte", "gpt2"}.
std::vector<std::string> tokenizer_names();

/// Makes the tokenizer called `name`. `dir` is the folder of its vocabulary files ("gpt2":
/// encoder.json and vocab.bpe) and is ignored by kinds without files ("byte"). Throws
/// dynamoe::ConfigError listing the valid names for an unknown name, and dynamoe::Error naming the
/// file when a vocabulary file is missing or corrupt.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name, const std::string& dir);

}  // namespace dynamoe::text
