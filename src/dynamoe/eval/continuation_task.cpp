#include "dynamoe/eval/continuation_task.h"

#include <algorithm>
#include <random>
#include <set>

#include "dynamoe/util/error.h"

namespace dynamoe::eval {

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int extra = 0;
    if (c < 0x80) extra = 0;
    else if (c >= 0xC2 && c <= 0xDF) extra = 1;
    else if (c >= 0xE0 && c <= 0xEF) extra = 2;
    else if (c >= 0xF0 && c <= 0xF4) extra = 3;
    else return false;
    if (i + static_cast<size_t>(extra) >= s.size()) return false;  // cut short
    for (int k = 1; k <= extra; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    if (extra == 2) {  // no overlong forms, no surrogates
      const unsigned char d = static_cast<unsigned char>(s[i + 1]);
      if ((c == 0xE0 && d < 0xA0) || (c == 0xED && d >= 0xA0)) return false;
    } else if (extra == 3) {
      const unsigned char d = static_cast<unsigned char>(s[i + 1]);
      if ((c == 0xF0 && d < 0x90) || (c == 0xF4 && d >= 0x90)) return false;
    }
    i += extra + 1;
  }
  return true;
}

std::vector<MultipleChoiceItem> continuation_task(const data::TokenFile& tokens, const text::Tokenizer& tok,
                                                  const ContinuationTaskOptions& o) {
  DYNAMOE_CHECK(o.choices >= 2 && o.context >= 1 && o.continuation >= 1, "continuation task: bad options (choices ",
                o.choices, ", context ", o.context, ", continuation ", o.continuation, ")");
  const int64_t window = o.context + o.continuation, n = tokens.size();
  // Non-overlapping slots of one window each; items take random slots.
  const int64_t slots = n / window;
  DYNAMOE_CHECK(slots >= 2 * o.items && n >= 4 * window, "continuation task: ", tokens.path(), " holds ", n,
                " tokens, too few for ", o.items, " items of ", window, " tokens");
  std::mt19937_64 rng(o.seed);
  std::vector<int64_t> order(static_cast<size_t>(slots));
  for (int64_t i = 0; i < slots; ++i) order[static_cast<size_t>(i)] = i;
  std::shuffle(order.begin(), order.end(), rng);
  const uint16_t* ids = tokens.data();
  auto text_of = [&](int64_t from, int64_t len) {
    std::vector<int32_t> v(ids + from, ids + from + len);
    return tok.decode(v);
  };
  std::uniform_int_distribution<int64_t> anywhere(0, n - o.continuation);
  std::vector<MultipleChoiceItem> items;
  for (size_t s = 0; s < order.size() && static_cast<int64_t>(items.size()) < o.items; ++s) {
    const int64_t start = order[s] * window;
    MultipleChoiceItem it;
    it.domain = o.domain;
    it.context = text_of(start, o.context);
    const std::string real = text_of(start + o.context, o.continuation);
    std::vector<std::string> choices = {real};
    std::set<std::string> seen = {real};
    for (int tries = 0; static_cast<int64_t>(choices.size()) < o.choices && tries < 1000; ++tries) {
      const int64_t at = anywhere(rng);
      if (at + o.continuation > start && at < start + window) continue;  // overlaps the item's own window
      std::string d = text_of(at, o.continuation);
      if (!seen.insert(d).second) continue;
      choices.push_back(std::move(d));
    }
    if (static_cast<int64_t>(choices.size()) < o.choices) continue;
    bool ok = valid_utf8(it.context);
    for (const auto& c : choices) ok = ok && valid_utf8(c);
    if (!ok) continue;
    // The real continuation goes to a random place.
    const int64_t label = std::uniform_int_distribution<int64_t>(0, o.choices - 1)(rng);
    std::swap(choices[0], choices[static_cast<size_t>(label)]);
    it.choices = std::move(choices);
    it.label = label;
    items.push_back(std::move(it));
  }
  DYNAMOE_CHECK(static_cast<int64_t>(items.size()) == o.items, "continuation task: only ", items.size(), " of ",
                o.items, " items could be built from ", tokens.path(), " (text not valid UTF-8?)");
  return items;
}

}  // namespace dynamoe::eval
