#pragma once
// The Jargon File (Debian's jargon-text: usr/share/doc/jargon-text/jargon.txt.gz, version
// 4.4.7) as documents of plain text: one per lexicon entry and one per chapter, section or
// appendix.
//
// Layout of the file: everything is indented by 3 spaces; chapter/section titles start in
// column 0 ("Chapter 1. Hacker Slang and Hacker Culture", "Verb Doubling", "Appendix A. ..."),
// part titles are centred ("                 Part II. The Jargon Lexicon"), an entry starts
// with a line ":headword: pronunciation, part of speech." indented by 3, the lexicon's letters
// are lines "  A" (2 spaces) followed by the list of their headwords, and cross-references are
// written {like this}.
//
// Cleaning: the headline ":404 compliant: adj." becomes "404 compliant: adj." (an empty
// pronunciation "//" is dropped); {cross-references} lose their braces; tables of contents
// (the letters' headword lists, the Glossary, the title page, "Table of Contents" blocks) and
// table lines drawn with box characters are dropped; the common indentation is removed and
// runs of blank lines collapse to one.
//
// Usage:
//   for (const auto& d : dynamoe::text::split_jargon_file(jargon_txt)) use(d.key, d.text);
#include <string>
#include <string_view>
#include <vector>

namespace dynamoe::text {

/// One document of the Jargon File.
struct JargonDocument {
  /// The headword of an entry or the title of a section, unique within the file (a repeated
  /// key gets " (2)", " (3)", ...).
  std::string key;
  /// Its plain text, ending with "\n".
  std::string text;
};

/// Splits and cleans the Jargon File's text (as described above), in file order. Text that does
/// not follow the layout is kept as prose of the document it falls in.
std::vector<JargonDocument> split_jargon_file(std::string_view text);

}  // namespace dynamoe::text
