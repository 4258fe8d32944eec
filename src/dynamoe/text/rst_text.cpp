#include "dynamoe/text/rst_text.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace dynamoe::text {
namespace {

// Inline markup longer than this is not looked for (keeps pathological paragraphs linear).
constexpr size_t kMaxInlineSpan = 4096;

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
bool is_non_ascii(char c) { return static_cast<unsigned char>(c) >= 0x80; }
// c is one of the characters of `set` (never true for NUL, unlike strchr).
bool one_of(const char* set, char c) { return c != '\0' && std::strchr(set, c) != nullptr; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// ---------------------------------------------------------------------------------------------
// Inline markup.

// reST: inline markup starts at the start of the text or after whitespace or one of - : / ' "
// < ( [ { (or any non-ASCII byte, e.g. a typographic quote), and not between a matching pair of
// brackets/quotes (e.g. "(*)").
bool start_ok(std::string_view s, size_t i, size_t len) {
  if (i + len >= s.size() || is_space(s[i + len])) return false;
  if (i == 0) return true;
  const char p = s[i - 1];
  if (!(is_space(p) || one_of("-:/'\"<([{", p) || is_non_ascii(p))) return false;
  static const char* const kPairs[] = {"()", "[]", "{}", "<>", "''", "\"\""};
  for (const char* pair : kPairs)
    if (p == pair[0] && s[i + len] == pair[1]) return false;
  return true;
}

// ... and ends before the end of the text, whitespace or one of - . , : ; ! ? \ / ' " ) ] } >.
bool end_ok_at(std::string_view s, size_t j) {
  return j >= s.size() || is_space(s[j]) || one_of("-.,:;!?\\/'\")]}>", s[j]) || is_non_ascii(s[j]);
}

// The position of the end-string `end` closing markup whose content starts at `from`: not
// preceded by whitespace (or a backslash, when `escapes`), followed by an end boundary (after
// the optional suffixes in `suffixes`, whose length goes to *suffix_len). npos when none.
size_t find_end(std::string_view s, size_t from, std::string_view end, bool escapes, size_t* suffix_len = nullptr,
                bool reference_suffix = false) {
  const size_t limit = std::min(s.size(), from + kMaxInlineSpan);
  for (size_t k = s.find(end, from); k != std::string_view::npos && k < limit; k = s.find(end, k + 1)) {
    if (k == from || is_space(s[k - 1]) || (escapes && s[k - 1] == '\\')) continue;
    size_t j = k + end.size();
    size_t suffix = 0;
    if (reference_suffix && j < s.size() && s[j] == '_') suffix = (j + 1 < s.size() && s[j + 1] == '_') ? 2 : 1;
    if (!end_ok_at(s, j + suffix)) continue;
    if (suffix_len) *suffix_len = suffix;
    return k;
  }
  return std::string_view::npos;
}

// "title <target>" -> {title, true}; otherwise {content, false}.
std::pair<std::string, bool> explicit_title(std::string_view content) {
  content = trim(content);
  if (!ends_with(content, ">")) return {std::string(content), false};
  const size_t lt = content.rfind('<');
  if (lt == std::string_view::npos || (lt > 0 && !is_space(content[lt - 1]) && content[lt - 1] != '`'))
    return {std::string(content), false};
  if (lt > 0 && content[lt - 1] == '\\') return {std::string(content), false};
  const std::string_view title = trim(content.substr(0, lt));
  if (title.empty()) return {std::string(content.substr(1, content.size() - 2)), true};  // `<url>`_
  return {std::string(title), true};
}

std::string role_text(std::string_view role, std::string_view content) {
  const size_t colon = role.rfind(':');
  const std::string_view base = colon == std::string_view::npos ? role : role.substr(colon + 1);
  if (base == "rspan" || base == "cspan") return "";  // flat-table cell spans
  auto [title, has_title] = explicit_title(content);
  if (has_title) return title;
  std::string_view t = trim(content);
  if (base == "pep" || base == "PEP" || base == "rfc" || base == "RFC") {
    const std::string_view num = t.substr(0, t.find('#'));
    return std::string(base == "pep" || base == "PEP" ? "PEP " : "RFC ") + std::string(num);
  }
  if (starts_with(t, "!")) t.remove_prefix(1);
  if (starts_with(t, "~")) {
    t.remove_prefix(1);
    const size_t dot = t.rfind('.');
    if (dot != std::string_view::npos && dot + 1 < t.size()) t = t.substr(dot + 1);
  }
  return std::string(t);
}

// Substitution definitions: |name| -> replacement text (reST markup).
using Substitutions = std::map<std::string, std::string, std::less<>>;

// The entities of docutils' isonum/isopub sets that the documents use, as if included.
const Substitutions& builtin_substitutions() {
  static const Substitutions subs = {
      {"copy", "\xc2\xa9"},      // (c)
      {"reg", "\xc2\xae"},       // (R)
      {"trade", "\xe2\x84\xa2"},  // TM
      {"nbsp", "\xc2\xa0"},      // no-break space
      {"ndash", "\xe2\x80\x93"},
      {"mdash", "\xe2\x80\x94"},
      {"hellip", "\xe2\x80\xa6"},
      {"times", "\xc3\x97"},
      {"micro", "\xc2\xb5"},
  };
  return subs;
}

std::string inline_text(std::string_view s, const Substitutions* subs = nullptr);  // below: substitutions recurse

// The take_* steps of inline_text: when the markup starting at s[i] is theirs, they append its
// text to `out`, move i past it and return true.

/// Backslash escape at s[i].
bool take_escape(std::string_view s, size_t& i, std::string& out) {
  const char c = s[i];
  const size_t n = s.size();
  if (c == '\\' && i + 1 < n) {  // backslash escape: "\ " vanishes, "\x" is x
    const char e = s[i + 1];
    if (e == '\n') {
      i += 1;
    } else {
      if (e != ' ') out += e;
      i += 2;
    }
    return true;
  }
  return false;
}

/// ``inline literal`` at s[i]: its text as is.
bool take_literal(std::string_view s, size_t& i, std::string& out) {
  const char c = s[i];
  const size_t n = s.size();
  // ``inline literal``
  if (c == '`' && i + 1 < n && s[i + 1] == '`' && start_ok(s, i, 2)) {
    const size_t k = find_end(s, i + 2, "``", false);
    if (k != std::string_view::npos) {
      out.append(s.substr(i + 2, k - i - 2));
      i = k + 2;
      return true;
    }
  }
  return false;
}

/// :role:`content` at s[i]: see role_text.
bool take_role(std::string_view s, size_t& i, std::string& out) {
  const char c = s[i];
  const size_t n = s.size();
  // :role:`content`
  if (c == ':' && start_ok(s, i, 1)) {
    size_t j = i + 1;
    while (j < n && (is_alnum(s[j]) || one_of("_-+.:", s[j]))) ++j;
    if (j < n && s[j] == '`' && j >= i + 3 && s[j - 1] == ':' && start_ok(s, j, 1)) {
      size_t suffix = 0;
      const size_t k = find_end(s, j + 1, "`", true, &suffix, true);
      if (k != std::string_view::npos) {
        out += role_text(s.substr(i + 1, j - i - 2), s.substr(j + 1, k - j - 1));
        i = k + 1 + suffix;
        return true;
      }
    }
  }
  return false;
}

/// `interpreted text`, `link <url>`_, `name`_ or `text`:role: at s[i].
bool take_interpreted(std::string_view s, size_t& i, std::string& out) {
  const char c = s[i];
  const size_t n = s.size();
  // `interpreted text`, `link <url>`_, `name`_, `text`:role:
  if (c == '`' && start_ok(s, i, 1)) {
    size_t suffix = 0;
    const size_t k = find_end(s, i + 1, "`", true, &suffix, true);
    if (k != std::string_view::npos) {
      const std::string_view content = s.substr(i + 1, k - i - 1);
      size_t next = k + 1 + suffix;
      if (suffix > 0) {
        out += explicit_title(content).first;
      } else if (next < n && s[next] == ':') {  // `content`:role:
        size_t j = next + 1;
        while (j < n && (is_alnum(s[j]) || one_of("_-+.", s[j]))) ++j;
        if (j < n && s[j] == ':' && j > next + 1 && end_ok_at(s, j + 1)) {
          out += role_text(s.substr(next + 1, j - next - 1), content);
          next = j + 1;
        } else {
          out += content;
        }
      } else {
        out += content;
      }
      i = next;
      return true;
    }
  }
  return false;
}

/// **strong** or *emphasis* at s[i]: its text.
bool take_emphasis(std::string_view s, size_t& i, std::string& out) {
  const char c = s[i];
  const size_t n = s.size();
  // **strong**, *emphasis*
  if (c == '*') {
    const size_t len = (i + 1 < n && s[i + 1] == '*') ? 2 : 1;
    if (start_ok(s, i, len) && !(len == 1 && i + 1 < n && s[i + 1] == '*')) {
      const size_t k = find_end(s, i + len, len == 2 ? "**" : "*", true);
      if (k != std::string_view::npos) {
        out.append(s.substr(i + len, k - i - len));
        i = k + len;
        return true;
      }
    }
  }
  return false;
}

/// |substitution| reference at s[i], when `subs` or the builtins define it: its replacement.
bool take_substitution(std::string_view s, size_t& i, std::string& out, const Substitutions* subs) {
  const char c = s[i];
  // |substitution| reference
  if (c == '|' && start_ok(s, i, 1)) {
    size_t suffix = 0;
    const size_t k = find_end(s, i + 1, "|", false, &suffix, true);
    if (k != std::string_view::npos) {
      const std::string_view name = s.substr(i + 1, k - i - 1);
      const std::string* replacement = nullptr;
      for (const Substitutions* table : {subs, &builtin_substitutions()}) {
        if (!table || replacement) continue;
        const auto it = table->find(name);
        if (it != table->end()) replacement = &it->second;
      }
      if (replacement) {
        out += inline_text(*replacement);  // builtins only: no recursion through definitions
        i = k + 1 + suffix;
        return true;
      }
    }
  }
  return false;
}

/// Footnote or citation reference at s[i]: dropped, with the spaces before it.
bool take_footnote_reference(std::string_view s, size_t& i, std::string& out) {
  const char c = s[i];
  const size_t n = s.size();
  // footnote / citation reference: [1]_, [#]_, [#name]_, [*]_, [CIT2002]_ -> dropped
  if (c == '[' && start_ok(s, i, 1)) {
    const size_t close = s.find(']', i + 1);
    if (close != std::string_view::npos && close - i <= 40 && close + 1 < n && s[close + 1] == '_' &&
        end_ok_at(s, close + 2)) {
      const std::string_view label = s.substr(i + 1, close - i - 1);
      const bool ok = std::all_of(label.begin(), label.end(),
                                  [](char ch) { return is_alnum(ch) || one_of("#*_.-", ch); });
      if (ok) {
        while (!out.empty() && out.back() == ' ') out.pop_back();
        i = close + 2;
        return true;
      }
    }
  }
  return false;
}

/// A word starting at s[i]: as is, without the _ or __ of a simple hyperlink reference.
bool take_word(std::string_view s, size_t& i, std::string& out) {
  const char c = s[i];
  const size_t n = s.size();
  // name_ / name__: a simple hyperlink reference
  if (is_alnum(c) && (i == 0 || is_space(s[i - 1]) || one_of("-:/'\"<([{", s[i - 1]))) {
    size_t j = i;
    while (j < n && (is_alnum(s[j]) || s[j] == '-')) ++j;
    if (j < n && s[j] == '_') {
      const size_t suffix = (j + 1 < n && s[j + 1] == '_') ? 2 : 1;
      if (end_ok_at(s, j + suffix) && !(j + suffix < n && s[j + suffix] == '_')) {
        out.append(s.substr(i, j - i));
        i = j + suffix;
        return true;
      }
    }
    out.append(s.substr(i, j - i));
    i = j;
    return true;
  }
  return false;
}

// The inline text of a paragraph; see rst_inline_to_text. |name| references are replaced
// from `subs` (then the builtins); unknown ones stay as they are.
std::string inline_text(std::string_view s, const Substitutions* subs) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    if (take_escape(s, i, out) || take_literal(s, i, out) || take_role(s, i, out) || take_interpreted(s, i, out) ||
        take_emphasis(s, i, out) || take_substitution(s, i, out, subs) || take_footnote_reference(s, i, out) ||
        take_word(s, i, out))
      continue;
    out += s[i];
    ++i;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Block structure.

enum class ArgsAs { kDrop, kProse, kSignature };
enum class BodyAs { kKeep, kLiteral, kSkip };

struct DirectiveRule {
  const char* name;
  ArgsAs args;
  BodyAs body;
  const char* label;  // printed before the arguments ("Note:"), or nullptr
};

const DirectiveRule kDirectives[] = {
    // no prose in these
    {"index", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"toctree", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"raw", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"include", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"literalinclude", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"highlight", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"highlightlang", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"sectionauthor", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"moduleauthor", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"codeauthor", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"module", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"currentmodule", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"program", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"default-role", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"default-domain", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"role", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"testsetup", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"testcleanup", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"image", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"tabularcolumns", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"contents", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"sectnum", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"meta", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"audit-event", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"audit-event-table", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"productionlist", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"rst-class", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"cssclass", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"graphviz", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"digraph", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"namespace", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"namespace-push", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"namespace-pop", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"kernel-doc", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"kernel-abi", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"kernel-feat", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"kernel-include", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"kernel-figure", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"kernel-render", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    {"maintainers-include", ArgsAs::kDrop, BodyAs::kSkip, nullptr},
    // verbatim bodies
    {"code-block", ArgsAs::kDrop, BodyAs::kLiteral, nullptr},
    {"sourcecode", ArgsAs::kDrop, BodyAs::kLiteral, nullptr},
    {"code", ArgsAs::kDrop, BodyAs::kLiteral, nullptr},
    {"doctest", ArgsAs::kDrop, BodyAs::kLiteral, nullptr},
    {"testcode", ArgsAs::kDrop, BodyAs::kLiteral, nullptr},
    {"testoutput", ArgsAs::kDrop, BodyAs::kLiteral, nullptr},
    {"parsed-literal", ArgsAs::kDrop, BodyAs::kLiteral, nullptr},
    {"math", ArgsAs::kDrop, BodyAs::kLiteral, nullptr},
    // admonitions and titled blocks: the argument is text
    {"note", ArgsAs::kProse, BodyAs::kKeep, "Note:"},
    {"warning", ArgsAs::kProse, BodyAs::kKeep, "Warning:"},
    {"seealso", ArgsAs::kProse, BodyAs::kKeep, "See also:"},
    {"tip", ArgsAs::kProse, BodyAs::kKeep, "Tip:"},
    {"important", ArgsAs::kProse, BodyAs::kKeep, "Important:"},
    {"hint", ArgsAs::kProse, BodyAs::kKeep, "Hint:"},
    {"caution", ArgsAs::kProse, BodyAs::kKeep, "Caution:"},
    {"danger", ArgsAs::kProse, BodyAs::kKeep, "Danger:"},
    {"attention", ArgsAs::kProse, BodyAs::kKeep, "Attention:"},
    {"error", ArgsAs::kProse, BodyAs::kKeep, "Error:"},
    {"impl-detail", ArgsAs::kProse, BodyAs::kKeep, "CPython implementation detail:"},
    {"availability", ArgsAs::kProse, BodyAs::kKeep, "Availability:"},
    {"admonition", ArgsAs::kProse, BodyAs::kKeep, nullptr},
    {"topic", ArgsAs::kProse, BodyAs::kKeep, nullptr},
    {"sidebar", ArgsAs::kProse, BodyAs::kKeep, nullptr},
    {"rubric", ArgsAs::kProse, BodyAs::kKeep, nullptr},
    {"centered", ArgsAs::kProse, BodyAs::kKeep, nullptr},
    {"table", ArgsAs::kProse, BodyAs::kKeep, nullptr},
    {"list-table", ArgsAs::kProse, BodyAs::kKeep, nullptr},
    {"csv-table", ArgsAs::kProse, BodyAs::kKeep, nullptr},
    {"flat-table", ArgsAs::kProse, BodyAs::kKeep, nullptr},
    // object descriptions: the signature is kept as a line
    {"function", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"method", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"classmethod", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"staticmethod", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"abstractmethod", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"coroutinefunction", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"coroutinemethod", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"awaitablefunction", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"awaitablemethod", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"decorator", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"decoratormethod", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"class", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"exception", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"attribute", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"property", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"data", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"envvar", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"option", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"cmdoption", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"describe", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"object", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"opcode", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"pdbcommand", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"2to3fixer", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"macro", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"type", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"member", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"var", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"struct", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"union", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"enum", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
    {"enumerator", ArgsAs::kSignature, BodyAs::kKeep, nullptr},
};

// The rule for a directive name; "c:function" / "py:method" use the part after the domain,
// other domain directives keep their signature; unknown names drop their arguments and keep
// their body.
DirectiveRule find_rule(std::string_view name) {
  for (const DirectiveRule& r : kDirectives)
    if (name == r.name) return r;
  const size_t colon = name.rfind(':');
  if (colon != std::string_view::npos) {
    const std::string_view base = name.substr(colon + 1);
    for (const DirectiveRule& r : kDirectives)
      if (base == r.name) return r;
    return {"", ArgsAs::kSignature, BodyAs::kKeep, nullptr};
  }
  return {"", ArgsAs::kDrop, BodyAs::kKeep, nullptr};
}

// "New in version 3.5." / "Changed in version 3.6: text" / "Deprecated since version 3.4, will
// be removed in version 3.6: text"; "" when `name` is not a version directive.
std::string version_line(std::string_view name, std::string_view args) {
  const char* prefix = name == "versionadded"                                   ? "New in version "
                       : name == "versionchanged"                               ? "Changed in version "
                       : (name == "deprecated" || name == "deprecated-removed") ? "Deprecated since version "
                                                                                : nullptr;
  if (!prefix) return "";
  auto take_word = [&]() {
    args = trim(args);
    const size_t sp = std::min(args.find(' '), args.size());
    std::string w(args.substr(0, sp));
    args = trim(args.substr(sp));
    return w;
  };
  std::string line = prefix + take_word();
  if (name == "deprecated-removed") line += ", will be removed in version " + take_word();
  line += args.empty() ? "." : ": " + std::string(args);
  return line;
}

enum class Kind { kProse, kLiteral, kBlank };

struct OutLine {
  Kind kind;
  std::string text;
};

// Expands tabs to 8-column stops and strips trailing whitespace.
std::string expand_line(std::string_view line) {
  std::string out;
  out.reserve(line.size());
  for (const char c : line) {
    if (c == '\t') {
      out.append(8 - out.size() % 8, ' ');
    } else {
      out += c;
    }
  }
  while (!out.empty() && is_space(out.back())) out.pop_back();
  return out;
}

int indent_of(const std::string& line) {
  const size_t i = line.find_first_not_of(' ');
  return i == std::string::npos ? 0 : static_cast<int>(i);
}

// A section-title underline/overline or a transition: one punctuation character repeated,
// 3 or more times.
bool is_adornment(std::string_view t) {
  if (t.size() < 3 || !one_of("=-~^\"'*+#_:`", t[0])) return false;
  return std::all_of(t.begin(), t.end(), [&](char c) { return c == t[0]; });
}

// +-----+------+ or +=====+======+
bool is_grid_border(std::string_view t) {
  return t.size() >= 3 && t.front() == '+' && t.back() == '+' &&
         t.find_first_not_of("+-=") == std::string_view::npos && t.find_first_of("-=") != std::string_view::npos;
}

// =====  =====  or  -----  ----- (a simple table's borders and column underlines)
bool is_simple_table_border(std::string_view t) {
  if (t.empty() || (t[0] != '=' && t[0] != '-')) return false;
  return t.find_first_not_of(std::string(1, t[0]) + " ") == std::string_view::npos && t.find(' ') != std::string_view::npos;
}

// ":name: value" / ":name:" at the start of a line, not a role (":func:`x`").
bool is_field(std::string_view t, size_t* name_end = nullptr) {
  if (t.size() < 3 || t[0] != ':' || is_space(t[1])) return false;
  const size_t close = t.find(':', 1);
  if (close == std::string_view::npos || close == 1 || t.substr(1, close - 1).find('`') != std::string_view::npos)
    return false;
  if (close + 1 < t.size() && !is_space(t[close + 1])) return false;
  if (name_end) *name_end = close;
  return true;
}

// The indentation of the text after a bullet or enumeration marker ("* ", "- ", "1. ", "#. ",
// "(a) ", "a) ") on a line indented by `indent`.
int body_indent(const std::string& line, int indent) {
  const std::string_view t = std::string_view(line).substr(static_cast<size_t>(indent));
  if (t.size() >= 2 && one_of("*-+", t[0]) && t[1] == ' ') return indent + 2;
  size_t i = t[0] == '(' ? 1 : 0;
  const size_t start = i;
  while (i < t.size() && (is_alnum(t[i]) || t[i] == '#') && i - start < 4) ++i;
  if (i > start && i + 1 < t.size() && (t[i] == '.' || t[i] == ')') && t[i + 1] == ' ') return indent + static_cast<int>(i) + 2;
  return indent;
}

class RstCleaner {
 public:
  std::string run(std::string_view src) {
    size_t pos = 0;
    if (starts_with(src, "\xEF\xBB\xBF")) pos = 3;  // UTF-8 byte-order mark
    while (pos <= src.size()) {
      size_t nl = src.find_first_of("\r\n", pos);
      if (nl == std::string_view::npos) nl = src.size();
      line(expand_line(src.substr(pos, nl - pos)));
      if (nl < src.size() && src[nl] == '\r' && nl + 1 < src.size() && src[nl + 1] == '\n') ++nl;
      pos = nl + 1;
    }
    flush_literal();
    return assemble();
  }

 private:
  void emit(Kind k, std::string text = "") {
    para_open_ = k == Kind::kProse;
    out_.push_back({k, std::move(text)});
  }

  void flush_literal() {
    if (!in_literal_) return;
    in_literal_ = false;
    while (!literal_.empty() && literal_.back().empty()) literal_.pop_back();
    int common = 1 << 30;
    for (const std::string& l : literal_)
      if (!l.empty()) common = std::min(common, indent_of(l));
    for (const std::string& l : literal_)
      emit(l.empty() ? Kind::kBlank : Kind::kLiteral, l.empty() ? "" : l.substr(static_cast<size_t>(common)));
    literal_.clear();
    emit(Kind::kBlank);
  }

  void line(const std::string& l) {
    const bool blank = l.empty();
    const int indent = indent_of(l);
    const std::string_view text = std::string_view(l).substr(blank ? 0 : static_cast<size_t>(indent));

    if (version_line_ >= 0 && !blank) {  // "Changed in version 3.6." + a body -> "...3.6:"
      std::string& v = out_[static_cast<size_t>(version_line_)].text;
      if (indent > header_indent_ && ends_with(v, ".")) v.back() = ':';
      version_line_ = -1;
    }
    if (skip_indent_ >= 0) {
      if (blank || indent > skip_indent_) return;
      skip_indent_ = -1;
    }
    if (in_literal_) {
      if (blank || indent > literal_parent_) {
        literal_.push_back(l);
        return;
      }
      flush_literal();
      literal_parent_ = -1;
    }
    if (in_header_) {
      if (blank) {
        in_header_ = false;
        emit(Kind::kBlank);
        return;
      }
      if (indent <= header_indent_) {
        in_header_ = false;
      } else if (option_indent_ >= 0 && indent > option_indent_) {
        return;  // continuation of an option's value
      } else if (is_field(text)) {
        option_indent_ = indent;
        return;
      } else if (header_args_ == ArgsAs::kSignature && option_indent_ < 0) {
        emit(Kind::kLiteral, std::string(text));  // another signature line
        return;
      } else {
        in_header_ = false;  // the body starts without a blank line
      }
    }
    if (doctest_) {
      if (!blank) {
        emit(Kind::kLiteral, std::string(text));
        return;
      }
      doctest_ = false;
    }
    if (literal_parent_ >= 0) {
      if (blank) {
        emit(Kind::kBlank);
        return;
      }
      if (indent > literal_parent_) {
        in_literal_ = true;
        literal_.assign(1, l);
        return;
      }
      literal_parent_ = -1;
    }
    if (blank) {
      grid_border_.clear();
      emit(Kind::kBlank);
      return;
    }
    if (starts_with(text, "..") && (text.size() == 2 || text[2] == ' ')) {
      if (para_open_) emit(Kind::kBlank);
      explicit_markup(indent, trim(text.substr(2)));
      return;
    }
    if (starts_with(text, "__ ")) return;  // anonymous hyperlink target
    if (is_grid_border(text)) {
      grid_border_ = l;
      return;
    }
    if (!grid_border_.empty() && text[0] == '|') {
      grid_row(l);
      return;
    }
    if (is_simple_table_border(text)) return;
    if (is_adornment(text)) {
      if (para_open_) emit(Kind::kBlank);
      return;
    }
    if (!para_open_ && starts_with(text, ">>>")) {
      doctest_ = true;
      emit(Kind::kLiteral, std::string(text));
      return;
    }
    prose(l, indent, text);
  }

  void prose(const std::string& l, int indent, std::string_view text) {
    std::string t(text);
    size_t name_end = 0;
    if (t == "|" || starts_with(t, "| ")) {
      t = t.size() > 2 ? t.substr(2) : "";  // line block
    } else if (is_field(t, &name_end)) {
      t = t.substr(1, name_end - 1) + ":" + t.substr(name_end + 1);  // field list
    }
    if (ends_with(t, "::")) {  // a literal block follows
      literal_parent_ = body_indent(l, indent);
      if (t == "::") {
        t.clear();
      } else if (ends_with(t, " ::")) {
        t.resize(t.size() - 3);
      } else {
        t.pop_back();
      }
      if (!t.empty()) emit(Kind::kProse, t);
      emit(Kind::kBlank);
      return;
    }
    emit(Kind::kProse, t);
  }

  void grid_row(const std::string& l) {
    std::string row = l;
    for (size_t i = 0; i < row.size() && i < grid_border_.size(); ++i)
      if (grid_border_[i] == '+' && (row[i] == '|' || row[i] == '+')) row[i] = ' ';
    std::string collapsed;
    for (const char c : trim(row)) {
      if (c == ' ' && !collapsed.empty() && collapsed.back() == ' ') continue;
      collapsed += c;
    }
    if (collapsed.empty() || collapsed.find_first_not_of("+-= ") == std::string::npos) return;  // row separator
    emit(Kind::kProse, collapsed);
  }

  void explicit_markup(int indent, std::string_view rest) {
    if (rest.empty() || rest[0] == '_' || rest[0] == '|') {  // comment, target, substitution
      const size_t bar = rest.empty() ? 0 : rest.find('|', 1);
      if (!rest.empty() && rest[0] == '|' && bar != std::string_view::npos) {
        const std::string_view def = trim(rest.substr(bar + 1));
        if (starts_with(def, "replace::")) subs_[std::string(rest.substr(1, bar - 1))] = trim(def.substr(9));
      }
      skip_indent_ = indent;
      return;
    }
    if (rest[0] == '[') {  // footnote or citation: keep its text
      const size_t close = rest.find(']');
      if (close != std::string_view::npos) {
        const std::string_view body = trim(rest.substr(close + 1));
        if (!body.empty()) emit(Kind::kProse, std::string(body));
        return;
      }
    }
    const size_t dc = rest.find("::");
    if (dc != std::string_view::npos && dc > 0 && (dc + 2 == rest.size() || rest[dc + 2] == ' ')) {
      const std::string_view name = rest.substr(0, dc);
      if (std::all_of(name.begin(), name.end(), [](char c) { return is_alnum(c) || one_of("_-+.:", c); })) {
        directive(indent, name, trim(rest.substr(dc + 2)));
        return;
      }
    }
    skip_indent_ = indent;  // any other ".. text" is a comment
  }

  void directive(int indent, std::string_view name, std::string_view args) {
    const DirectiveRule rule = find_rule(name);
    if (rule.body == BodyAs::kSkip) {
      skip_indent_ = indent;
      return;
    }
    const std::string version = version_line(name, args);
    if (!version.empty()) {
      emit(Kind::kProse, version);
      version_line_ = static_cast<int>(out_.size()) - 1;
    } else if (rule.args == ArgsAs::kSignature) {
      if (!args.empty()) emit(Kind::kLiteral, std::string(args));
    } else if (rule.args == ArgsAs::kProse || rule.label) {
      std::string t = rule.label ? rule.label : "";
      if (rule.args == ArgsAs::kProse && !args.empty()) t += (t.empty() ? "" : " ") + std::string(args);
      if (!t.empty()) emit(Kind::kProse, t);
    }
    in_header_ = true;
    header_indent_ = indent;
    option_indent_ = -1;
    header_args_ = version.empty() ? rule.args : ArgsAs::kProse;
    if (rule.body == BodyAs::kLiteral) literal_parent_ = indent;
  }

  // Joins prose lines into paragraphs for the inline rules, collapses blank lines.
  std::string assemble() const {
    std::string result;
    bool need_blank = false;
    auto put = [&](std::string_view l) {
      while (!l.empty() && is_space(l.back())) l.remove_suffix(1);
      if (l.empty()) return;
      if (need_blank && !result.empty()) result += '\n';
      need_blank = false;
      result.append(l);
      result += '\n';
    };
    for (size_t i = 0; i < out_.size();) {
      if (out_[i].kind == Kind::kBlank) {
        need_blank = true;
        ++i;
      } else if (out_[i].kind == Kind::kLiteral) {
        put(out_[i].text);
        ++i;
      } else {
        std::string para;
        for (; i < out_.size() && out_[i].kind == Kind::kProse; ++i) {
          if (!para.empty()) para += '\n';
          para += out_[i].text;
        }
        const std::string text = inline_text(para, &subs_);
        for (size_t pos = 0; pos <= text.size();) {
          size_t nl = text.find('\n', pos);
          if (nl == std::string::npos) nl = text.size();
          put(trim(std::string_view(text).substr(pos, nl - pos)));
          pos = nl + 1;
        }
      }
    }
    return result;
  }

  std::vector<OutLine> out_;
  bool para_open_ = false;
  int skip_indent_ = -1;  // dropping an explicit-markup block indented more than this
  bool in_header_ = false;  // between a directive line and its first blank line
  int header_indent_ = 0;
  int option_indent_ = -1;
  ArgsAs header_args_ = ArgsAs::kDrop;
  int literal_parent_ = -1;  // a literal block indented more than this may follow
  bool in_literal_ = false;
  std::vector<std::string> literal_;
  bool doctest_ = false;
  std::string grid_border_;
  int version_line_ = -1;  // index in out_ of a version line whose body may follow
  Substitutions subs_;     // `.. |name| replace:: text` definitions
};

}  // namespace

std::string rst_inline_to_text(std::string_view paragraph) { return inline_text(paragraph); }

std::string rst_to_text(std::string_view rst) { return RstCleaner().run(rst); }

}  // namespace dynamoe::text
