#include "dynamoe/text/jargon_text.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <string>
#include <vector>

namespace dynamoe::text {
namespace {

bool is_blank(std::string_view l) { return l.find_first_not_of(" \t") == std::string_view::npos; }

size_t jargon_indent(std::string_view l) {
  const size_t i = l.find_first_not_of(' ');
  return i == std::string_view::npos ? l.size() : i;
}

std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A line drawn with Unicode box characters (U+2500..U+257F: E2 94 80 .. E2 95 BF).
bool is_box_line(std::string_view l) {
  const std::string_view t = trim_blanks(l);
  return t.size() >= 3 && static_cast<unsigned char>(t[0]) == 0xE2 &&
         (static_cast<unsigned char>(t[1]) == 0x94 || static_cast<unsigned char>(t[1]) == 0x95);
}

// "   :headword: rest" -> headword (and the rest in *rest); "" when the line is no entry start.
std::string entry_headword(std::string_view l, std::string_view* rest) {
  if (l.substr(0, 4) != "   :" || l.size() < 6) return "";
  const size_t close = l.find(':', 5);
  if (close == std::string_view::npos) return "";
  *rest = trim_blanks(l.substr(close + 1));
  return std::string(l.substr(4, close - 4));
}

enum class Boundary { kEntry, kSection, kLetter };

struct Block {
  Boundary kind;
  std::string key;
  std::string headline;
  std::vector<std::string_view> body;
};

// "{bit bucket}" -> "bit bucket": braces around a short phrase (at most one line break, no
// code-like characters) are a cross-reference.
std::string drop_reference_braces(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '{') {
      const size_t close = s.find_first_of("{}", i + 1);
      if (close != std::string_view::npos && s[close] == '}' && close > i + 1 && close - i <= 80) {
        const std::string_view inner = s.substr(i + 1, close - i - 1);
        const bool ok = inner.front() != ' ' && inner.back() != ' ' && inner.find_first_of(";=") == std::string_view::npos &&
                        std::count(inner.begin(), inner.end(), '\n') <= 1;
        if (ok) {
          out.append(inner);
          i = close;
          continue;
        }
      }
    }
    out += s[i];
  }
  return out;
}

// The paragraphs of a block body (blank-separated runs of lines).
std::vector<std::vector<std::string_view>> paragraphs(const std::vector<std::string_view>& body) {
  std::vector<std::vector<std::string_view>> paras;
  bool open = false;
  for (std::string_view l : body) {
    if (is_blank(l)) {
      open = false;
    } else {
      if (!open) paras.emplace_back();
      paras.back().push_back(l);
      open = true;
    }
  }
  return paras;
}

// The cleaned text of a block, or "" when it is only a table of contents.
std::string block_text(const Block& b) {
  if (b.kind == Boundary::kLetter) return "";
  const std::vector<std::vector<std::string_view>> paras = paragraphs(b.body);
  if (b.kind != Boundary::kEntry && paras.size() >= 5 &&
      std::all_of(paras.begin(), paras.end(), [](const auto& p) { return p.size() == 1; }))
    return "";  // only a list of titles or headwords
  // A title-like paragraph: one short line, not a bullet, not ending like a sentence.
  auto title_like = [](const std::vector<std::string_view>& p) {
    const std::string_view t = trim_blanks(p[0]);
    return p.size() == 1 && t.size() < 60 && std::string_view(".!?:;,").find(t.back()) == std::string_view::npos &&
           t.substr(0, 3) != "\xe2\x80\xa2";  // U+2022 bullet
  };
  std::vector<std::vector<std::string_view>> kept;
  for (size_t i = 0; i < paras.size();) {
    // "Table of Contents" and the one-line paragraphs after it.
    if (paras[i].size() == 1 && trim_blanks(paras[i][0]) == "Table of Contents") {
      for (++i; i < paras.size() && paras[i].size() == 1;) ++i;
      continue;
    }
    // In a section, 4 or more title-like paragraphs in a row: a list of titles or headwords.
    size_t j = i;
    while (b.kind != Boundary::kEntry && j < paras.size() && title_like(paras[j])) ++j;
    if (j - i >= 4) {
      i = j;
      continue;
    }
    kept.push_back(paras[i++]);
  }
  if (b.kind == Boundary::kSection && kept.empty()) return "";  // a title with nothing under it
  size_t common = std::string_view::npos;
  for (const auto& p : kept)
    for (std::string_view l : p)
      if (!is_box_line(l)) common = std::min(common, jargon_indent(l));
  std::string text = b.headline.empty() ? "" : b.headline + "\n";
  for (const auto& p : kept) {
    std::string para;
    for (std::string_view l : p) {
      if (is_box_line(l)) continue;
      std::string_view t = l.substr(std::min(common, jargon_indent(l)));
      while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
      para.append(t);
      para += '\n';
    }
    if (para.empty()) continue;
    if (!text.empty()) text += '\n';
    text += para;
  }
  return drop_reference_braces(text);
}

}  // namespace

std::vector<JargonDocument> split_jargon_file(std::string_view text) {
  std::vector<std::string_view> lines;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view l = text.substr(pos, nl - pos);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    lines.push_back(l);
    pos = nl + 1;
  }
  std::vector<Block> blocks(1, Block{Boundary::kSection, "", "", {}});  // text before any title
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string_view l = lines[i];
    const bool alone = (i == 0 || is_blank(lines[i - 1])) && (i + 1 == lines.size() || is_blank(lines[i + 1]));
    std::string_view rest;
    std::string head = entry_headword(l, &rest);
    if (!head.empty()) {
      if (rest.substr(0, 2) == "//") rest = trim_blanks(rest.substr(2));
      if (!rest.empty() && rest[0] == ',') rest = trim_blanks(rest.substr(1));
      const std::string headline = head + ":" + (rest.empty() ? "" : " " + std::string(rest));
      blocks.push_back({Boundary::kEntry, head, headline, {}});
      continue;
    }
    const std::string_view t = trim_blanks(l);
    if (!t.empty() && l[0] != ' ' && !is_box_line(l)) {  // a title in column 0
      blocks.push_back({Boundary::kSection, std::string(t), std::string(t), {}});
      continue;
    }
    if (alone && jargon_indent(l) >= 20 && std::isupper(static_cast<unsigned char>(t[0])) &&
        t.find_first_of("/|\\_") == std::string_view::npos) {  // a centred part title
      blocks.push_back({Boundary::kSection, std::string(t), std::string(t), {}});
      continue;
    }
    if (l.size() == 3 && l.substr(0, 2) == "  " && (std::isupper(static_cast<unsigned char>(l[2])) || l[2] == '0')) {
      blocks.push_back({Boundary::kLetter, std::string(l.substr(2)), "", {}});  // a lexicon letter
      continue;
    }
    blocks.back().body.push_back(l);
  }
  std::vector<JargonDocument> docs;
  std::map<std::string, int> seen;
  for (const Block& b : blocks) {
    std::string t = block_text(b);
    if (t.find_first_not_of(" \n") == std::string::npos) continue;
    std::string key = b.key.empty() ? "(front matter)" : b.key;
    const int n = ++seen[key];
    if (n > 1) key += " (" + std::to_string(n) + ")";
    docs.push_back({std::move(key), std::move(t)});
  }
  return docs;
}

}  // namespace dynamoe::text
