#pragma once
// reStructuredText (Sphinx sources: the Python and Linux kernel documentation) to plain text
// for language modelling: readable English prose without markup noise.
//
// Block level:
//   - section-title underlines/overlines and transitions (a line of one repeated punctuation
//     character, 3 or more), grid- and simple-table borders: dropped; grid-table rows lose
//     their column bars;
//   - explicit markup: comments (`..` blocks), hyperlink targets (`.. _label:`, `__ url`) and
//     substitution definitions (`.. |name| ...`) are dropped with their indented block;
//     footnotes and citations (`.. [1] text`) keep their text;
//   - directives (`.. name:: args`): the directive line and its option lines (`:option:
//     value`) are dropped; the indented body is kept. Some bodies are dropped (index,
//     toctree, raw, include, image, kernel-doc, testsetup, ...: no prose). Description
//     directives (function, class, c:function, option, ...) keep their signature as a line;
//     admonitions keep a label and their argument ("Note:", "See also: ..."); versionadded /
//     versionchanged / deprecated become "New in version 3.5." / "Changed in version 3.6: ..."
//     / "Deprecated since version 3.4: ...";
//   - literal blocks (after a paragraph ending in `::`, `code-block` and friends, doctest
//     blocks `>>>`) are kept verbatim, dedented; a paragraph's `::` becomes `:` ("Example::")
//     or disappears (" ::", or a `::` line);
//   - prose lines lose their indentation; field-list markers lose their leading colon
//     (`:param x: y` -> `param x: y`); line-block bars (`| `) are dropped; runs of blank lines
//     collapse to one.
// Inline (within each paragraph, following reST's start/end-string rules):
//   :role:`text <target>` -> text, :role:`target` -> target (`~a.b.c` -> c, `!x` -> x,
//   :pep:`8` -> PEP 8, :rfc:`2616` -> RFC 2616), ``literal`` -> literal, *emph* / **strong** /
//   `interpreted` -> their words, `link <url>`_ -> link, `name`_ / name_ -> name, |name| -> its
//   `.. |name| replace:: text` (or the isonum/isopub character for |copy|, |reg|, |trade|, ...),
//   footnote references ([1]_, [#]_) dropped, backslash escapes resolved ("\ " -> "").
//
// Usage:
//   std::string text = dynamoe::text::rst_to_text(read_file("os.path.rst.txt"));
#include <string>
#include <string_view>

namespace dynamoe::text {

/// Plain text of reST source `rst` (any bytes; CRLF/CR line ends become LF, tabs expand to
/// 8-column stops). The result has no leading or trailing blank lines, ends with "\n" unless
/// empty, and never holds two blank lines in a row. Never throws on malformed markup: what it
/// does not recognise stays as text.
std::string rst_to_text(std::string_view rst);

/// The text of the inline markup in `paragraph` (the inline rules above, applied to one
/// paragraph; newlines are kept; only the builtin |substitutions|). Exposed for tests.
std::string rst_inline_to_text(std::string_view paragraph);

}  // namespace dynamoe::text
