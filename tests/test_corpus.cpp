// Text corpora for language modelling: the reST cleaner and the Jargon File splitter on crafted
// inputs, the split rule, fake unpacked Debian packages -> train.bin/val.bin/meta.json with exact
// token counts (byte tokenizer), token files round trip and their corruption errors, the caches,
// apt-get failures, the command line, and - with the Debian mirror - a real fetch of jargon.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "dynamoe/data/corpus.h"
#include "dynamoe/data/deb_package.h"
#include "dynamoe/data/token_file.h"
#include "dynamoe/text/jargon_text.h"
#include "dynamoe/text/rst_text.h"
#include "dynamoe/util/atomic_file.h"
#include "dynamoe/util/error.h"
#include "dynamoe/util/hash.h"
#include "dynamoe/util/process.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using dynamoe::data::FetchOptions;
using dynamoe::testutil::expect_error;
using dynamoe::testutil::ScopedEnv;
using dynamoe::text::rst_inline_to_text;
using dynamoe::text::rst_to_text;
using ScratchDir = dynamoe::testutil::TempDir;

const std::string kPyRoot = "usr/share/doc/python3.11/html/_sources/";
const std::string kKernelRoot = "usr/share/doc/linux-doc-6.1/Documentation/";
const std::string kJargonFile = "usr/share/doc/jargon-text/jargon.txt.gz";

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

void write_gzip(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  gzFile gz = gzopen(path.c_str(), "wb");
  ASSERT_NE(gz, nullptr) << path;
  ASSERT_EQ(gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(gz), Z_OK);
}

// ---------------------------------------------------------------------------------------------
// reST -> text

TEST(RstText, InlineMarkup) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"see :ref:`the tutorial <tut-intro>` now", "see the tutorial now"},
      {":func:`os.path.join` joins", "os.path.join joins"},
      {":meth:`~object.__init__` and :class:`!Foo`", "__init__ and Foo"},
      {":c:func:`PyObject_New`, :py:mod:`os`", "PyObject_New, os"},
      {":pep:`8` and :rfc:`2616#section-3`", "PEP 8 and RFC 2616"},
      {"``literal *not emph*`` here", "literal *not emph* here"},
      {"*emph* and **strong** words", "emph and strong words"},
      {"a `link <https://python.org>`_ and `<https://x.org>`__", "a link and https://x.org"},
      {"`name`_ and name_ and `default role`", "name and name and default role"},
      {"footnote [1]_ and [#]_.", "footnote and."},
      {"2 * 3 * 4, (*) and a*b", "2 * 3 * 4, (*) and a*b"},
      {"call f(*args, **kwargs)", "call f(*args, **kwargs)"},
      {"__init__ and foo_bar and snake_case_", "__init__ and foo_bar and snake_case_"},
      {"escaped \\*star\\* and :class:`int`\\ s", "escaped *star* and ints"},
      {"across :ref:`two\nlines <x>` ok", "across two\nlines ok"},
      {"`text`:term: and |copy| 2009", "text and \xc2\xa9 2009"},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(rst_inline_to_text(in), want) << "input: " << in;
}

TEST(RstText, TitlesTransitionsAndBlankLines) {
  EXPECT_EQ(rst_to_text("=====\nTitle\n=====\n\nSub\n---\nText *here*.\n\n\n\n----------\n\nMore.\r\n\r\n"),
            "Title\n\nSub\n\nText here.\n\nMore.\n");
  EXPECT_EQ(rst_to_text(""), "");
  EXPECT_EQ(rst_to_text("\n\n.. comment only\n\n"), "");
}

TEST(RstText, CommentsTargetsSubstitutionsFootnotes) {
  const std::string rst =
      ".. _label:\n"
      "\n"
      ".. This is a comment\n"
      "   spanning lines.\n"
      "\n"
      "..\n"
      "   Empty-comment block.\n"
      "\n"
      ".. |name| replace:: *the* name\n"
      ".. _python: https://python.org\n"
      "__ https://anonymous.org\n"
      "\n"
      "Paragraph with |name| and python_.\n"
      "\n"
      ".. [1] The footnote text\n"
      "   continues.\n";
  EXPECT_EQ(rst_to_text(rst), "Paragraph with the name and python.\n\nThe footnote text\ncontinues.\n");
}

TEST(RstText, DirectivesKeepBodiesDropOptions) {
  const std::string rst =
      ".. module:: os.path\n"
      "   :synopsis: Operations on pathnames.\n"
      "\n"
      ".. index:: single: path\n"
      "\n"
      ".. toctree::\n"
      "   :maxdepth: 2\n"
      "\n"
      "   intro\n"
      "   usage\n"
      "\n"
      ".. function:: join(path, *paths)\n"
      "              join(a)\n"
      "   :noindex:\n"
      "\n"
      "   Join *paths*, see :func:`split`.\n"
      "\n"
      "   .. versionchanged:: 3.6\n"
      "      Accepts a :term:`path-like object`.\n"
      "\n"
      "   .. versionadded:: 3.5\n"
      "\n"
      "   .. deprecated-removed:: 3.4 3.6 Use *other*.\n"
      "\n"
      ".. note:: Inline note\n"
      "   continued.\n"
      "\n"
      ".. seealso::\n"
      "\n"
      "   Module :mod:`glob`\n"
      "\n"
      ".. figure:: picture.png\n"
      "   :alt: a picture\n"
      "\n"
      "   The caption.\n"
      "\n"
      ".. raw:: html\n"
      "\n"
      "   <b>html</b>\n"
      "\n"
      ".. unknown-directive:: dropped args\n"
      "   :opt: 1\n"
      "\n"
      "   Kept body.\n";
  EXPECT_EQ(rst_to_text(rst),
            "join(path, *paths)\n"
            "join(a)\n"
            "\n"
            "Join paths, see split.\n"
            "\n"
            "Changed in version 3.6:\n"
            "Accepts a path-like object.\n"
            "\n"
            "New in version 3.5.\n"
            "\n"
            "Deprecated since version 3.4, will be removed in version 3.6: Use other.\n"
            "\n"
            "Note: Inline note\n"
            "continued.\n"
            "\n"
            "See also:\n"
            "\n"
            "Module glob\n"
            "\n"
            "The caption.\n"
            "\n"
            "Kept body.\n");
}

TEST(RstText, LiteralBlocksAreKeptDedented) {
  const std::string rst =
      "Example::\n"
      "\n"
      "    def f(*args):\n"
      "        return ``x``\n"
      "\n"
      "    f()\n"
      "\n"
      "Expanded ::\n"
      "\n"
      "  $ ls *.txt\n"
      "\n"
      "::\n"
      "\n"
      "  lone\n"
      "\n"
      ".. code-block:: c\n"
      "   :linenos:\n"
      "\n"
      "\tint *p = NULL;\n"
      "\n"
      ">>> 2 * 3\n"
      "6\n"
      "\n"
      "* item::\n"
      "\n"
      "  more item text, not literal\n";
  EXPECT_EQ(rst_to_text(rst),
            "Example:\n"
            "\n"
            "def f(*args):\n"
            "    return ``x``\n"
            "\n"
            "f()\n"
            "\n"
            "Expanded\n"
            "\n"
            "$ ls *.txt\n"
            "\n"
            "lone\n"
            "\n"
            "int *p = NULL;\n"
            "\n"
            ">>> 2 * 3\n"
            "6\n"
            "\n"
            "* item:\n"
            "\n"
            "more item text, not literal\n");
}

TEST(RstText, ListsFieldsAndTables) {
  const std::string rst =
      ":Author: Somebody\n"
      ":param x: the *value*\n"
      "\n"
      "* first\n"
      "  item\n"
      "\n"
      "| line block\n"
      "\n"
      "+------+-------+\n"
      "| Op   | Notes |\n"
      "+======+=======+\n"
      "| a|b  | *or*  |\n"
      "+------+-------+\n"
      "\n"
      "=====  =====\n"
      "x      y\n"
      "=====  =====\n";
  EXPECT_EQ(rst_to_text(rst),
            "Author: Somebody\n"
            "param x: the value\n"
            "\n"
            "* first\n"
            "item\n"
            "\n"
            "line block\n"
            "\n"
            "Op Notes\n"
            "a|b or\n"
            "\n"
            "x      y\n");
}

// ---------------------------------------------------------------------------------------------
// The Jargon File

const char* kFakeJargon =
    "                                The Jargon File\n"
    "\n"
    "(version 4.4.7)\n"
    "\n"
    "   Table of Contents\n"
    "\n"
    "   I. Introduction\n"
    "\n"
    "   1. Hacker Slang\n"
    "\n"
    "   II. The Jargon Lexicon\n"
    "\n"
    "   Glossary\n"
    "\n"
    "Chapter 1. Hacker Slang\n"
    "\n"
    "   This document is a collection of slang terms used by\n"
    "   hackers, see {hack}.\n"
    "\n"
    "   ┌────┬────┐\n"
    "   │ a  │ b  │\n"
    "   └────┴────┘\n"
    "\n"
    "                          Part II. The Jargon Lexicon\n"
    "\n"
    "   The lexicon starts here.\n"
    "\n"
    "   Table of Contents\n"
    "\n"
    "   Glossary\n"
    "\n"
    "  H\n"
    "\n"
    "   hack\n"
    "\n"
    "   hacker\n"
    "\n"
    "   :hack: //, n.\n"
    "\n"
    "   1. Originally, a quick job that produces what is needed,\n"
    "   but not well. See {kludge}.\n"
    "\n"
    "      if (x) { y; }\n"
    "\n"
    "   :hacker: /hak'r/, n.\n"
    "\n"
    "   [originally, someone who makes furniture with an axe] A person who\n"
    "   enjoys exploring the details of {programmable\n"
    "   systems}.\n";

TEST(JargonText, SplitsEntriesAndSectionsDropsTablesOfContents) {
  const auto docs = dynamoe::text::split_jargon_file(kFakeJargon);
  ASSERT_EQ(docs.size(), 4u);
  EXPECT_EQ(docs[0].key, "Chapter 1. Hacker Slang");
  EXPECT_EQ(docs[0].text,
            "Chapter 1. Hacker Slang\n\nThis document is a collection of slang terms used by\nhackers, see hack.\n");
  EXPECT_EQ(docs[1].key, "Part II. The Jargon Lexicon");
  EXPECT_EQ(docs[1].text, "Part II. The Jargon Lexicon\n\nThe lexicon starts here.\n");
  EXPECT_EQ(docs[2].key, "hack");
  EXPECT_EQ(docs[2].text,
            "hack: n.\n\n1. Originally, a quick job that produces what is needed,\nbut not well. See kludge.\n\n"
            "   if (x) { y; }\n");
  EXPECT_EQ(docs[3].key, "hacker");
  EXPECT_EQ(docs[3].text,
            "hacker: /hak'r/, n.\n\n[originally, someone who makes furniture with an axe] A person who\n"
            "enjoys exploring the details of programmable\nsystems.\n");
}

// ---------------------------------------------------------------------------------------------
// The split rule

TEST(CorpusSplit, Fnv1a64AndTheValRule) {
  EXPECT_EQ(dynamoe::fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(dynamoe::fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(dynamoe::fnv1a64_hex("hello"), "a430d84680aabd0b");
  EXPECT_EQ(dynamoe::fnv1a64("lo", dynamoe::fnv1a64("hel")), dynamoe::fnv1a64("hello"));
  // fnv1a64 of this path is 0xb32fc1525984391a, 10 mod 20: train.
  EXPECT_FALSE(dynamoe::data::is_val_document(kPyRoot + "faq/gui.rst.txt"));
  // Of library/mod00..mod39.rst.txt exactly mod11 and mod19 hash to 0 mod 20.
  for (int i = 0; i < 40; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "library/mod%02d.rst.txt", i);
    EXPECT_EQ(dynamoe::data::is_val_document(kPyRoot + name), i == 11 || i == 19) << name;
  }
  int val = 0;
  for (int i = 0; i < 100000; ++i) val += dynamoe::data::is_val_document("doc/" + std::to_string(i) + ".rst");
  EXPECT_EQ(val, 4963);  // about 5%
}

TEST(Corpus, RegistryAndNames) {
  EXPECT_EQ(dynamoe::data::corpus_names(), (std::vector<std::string>{"python-docs", "kernel-docs", "jargon"}));
  EXPECT_EQ(dynamoe::data::corpus_package("python-docs"), "python3.11-doc");
  EXPECT_EQ(dynamoe::data::corpus_package("kernel-docs"), "linux-doc-6.1");
  EXPECT_EQ(dynamoe::data::corpus_package("jargon"), "jargon-text");
  EXPECT_TRUE(dynamoe::data::is_corpus("jargon"));
  EXPECT_FALSE(dynamoe::data::is_corpus("mnist"));
  EXPECT_EQ(dynamoe::data::corpus_dir("data", "jargon", "byte"), "data/jargon/byte");
  EXPECT_EQ(dynamoe::data::corpus_text_dir("d", "jargon"), "d/jargon/text");
  expect_error([] { dynamoe::data::corpus_package("wiki"); }, {"unknown corpus 'wiki'", "python-docs, kernel-docs, jargon"});
  FetchOptions opts;
  EXPECT_THROW(dynamoe::data::fetch_corpus("jargon", "sentencepiece", opts), dynamoe::ConfigError);
}

// ---------------------------------------------------------------------------------------------
// Fake unpacked packages

// python-docs: 40 modules (mod11 and mod19 go to val), an index made only of a toctree (empty
// once clean: left out) and a file that is not a document.
std::string make_python_package(const ScratchDir& dir) {
  const std::string root = dir.file("pkg");
  for (int i = 0; i < 40; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "mod%02d", i);
    write_text(root + "/" + kPyRoot + "library/" + name + ".rst.txt",
               std::string(":mod:`") + name + "` --- Module\n====================\n\n.. module:: " + name +
                   "\n\nThe *" + name + "* module does " + std::string(static_cast<size_t>(i), 'x') + ".\n");
  }
  write_text(root + "/" + kPyRoot + "index.rst.txt", ".. toctree::\n   :maxdepth: 1\n\n   library/mod00\n");
  write_text(root + "/" + kPyRoot + "library/notes.txt", "not a document\n");
  return root;
}

// The clean text of fake module i.
std::string python_module_text(int i) {
  char name[32];
  std::snprintf(name, sizeof(name), "mod%02d", i);
  return std::string(name) + " --- Module\n\nThe " + name + " module does " + std::string(static_cast<size_t>(i), 'x') +
         ".\n";
}

// The byte tokenizer's ids of documents, each followed by end-of-text 256.
std::vector<uint16_t> byte_ids(const std::vector<std::string>& docs) {
  std::vector<uint16_t> ids;
  for (const std::string& d : docs) {
    for (const char c : d) ids.push_back(static_cast<uint8_t>(c));
    ids.push_back(256);
  }
  return ids;
}

std::vector<uint16_t> file_ids(const dynamoe::data::TokenFile& f) { return {f.data(), f.data() + f.size()}; }

TEST(Corpus, FakePythonPackageToTokenFiles) {
  ScratchDir dir;
  const std::string root = make_python_package(dir);
  const auto docs = dynamoe::data::read_corpus_documents("python-docs", root);
  ASSERT_EQ(docs.size(), 40u);  // the index is empty once clean, notes.txt is no document
  EXPECT_EQ(docs[0].path, kPyRoot + "library/mod00.rst.txt");
  EXPECT_EQ(docs[7].text, python_module_text(7));

  FetchOptions opts;
  opts.data_dir = dir.file("data");
  std::ostringstream log;
  opts.log = &log;
  const std::string out = dynamoe::data::convert_corpus_package("python-docs", root, "3.11.2-6+deb12u9", "byte", opts);
  EXPECT_EQ(out, dir.file("data/python-docs/byte"));

  std::vector<std::string> train, val;
  for (int i = 0; i < 40; ++i) (i == 11 || i == 19 ? val : train).push_back(python_module_text(i));
  const dynamoe::data::TokenCorpus c = dynamoe::data::open_token_corpus(out);
  EXPECT_EQ(file_ids(c.train), byte_ids(train));
  EXPECT_EQ(file_ids(c.val), byte_ids(val));
  EXPECT_EQ(c.vocab_size, 257);
  EXPECT_EQ(c.eot_id, 256);
  EXPECT_EQ(c.tokenizer, "byte");
  EXPECT_EQ(c.dir, out);
  int64_t train_bytes = 0, val_bytes = 0;
  for (const auto& t : train) train_bytes += static_cast<int64_t>(t.size());
  for (const auto& t : val) val_bytes += static_cast<int64_t>(t.size());
  const nlohmann::json& m = c.meta;
  EXPECT_EQ(m["corpus"], "python-docs");
  EXPECT_EQ(m["debian_package"], "python3.11-doc");
  EXPECT_EQ(m["package_version"], "3.11.2-6+deb12u9");
  EXPECT_EQ(m["tokenizer"], "byte");
  EXPECT_EQ(m["vocab_size"], 257);
  EXPECT_EQ(m["eot_id"], 256);
  EXPECT_EQ(m["splits"]["train"]["documents"], 38);
  EXPECT_EQ(m["splits"]["val"]["documents"], 2);
  EXPECT_EQ(m["splits"]["train"]["tokens"], train_bytes + 38);
  EXPECT_EQ(m["splits"]["val"]["tokens"], val_bytes + 2);
  EXPECT_EQ(m["splits"]["train"]["text_bytes"], train_bytes);
  EXPECT_EQ(m["splits"]["val"]["text_bytes"], val_bytes);
  EXPECT_EQ(m["splits"]["val"]["checksum"], dynamoe::fnv1a64_hex(dynamoe::read_file(out + "/val.bin")));

  // The clean-text cache: documents in order, each followed by NUL.
  std::string val_txt;
  for (const auto& t : val) val_txt += t + '\0';
  EXPECT_EQ(dynamoe::read_file(dir.file("data/python-docs/text/val.txt")), val_txt);
  EXPECT_NE(log.str().find("train 38 documents"), std::string::npos) << log.str();
}

// kernel-docs: gzipped and plain .rst under Documentation/, translations/ left out.
TEST(Corpus, FakeKernelPackageReadsGzipAndSkipsTranslations) {
  ScratchDir dir;
  const std::string root = dir.file("pkg");
  write_gzip(root + "/" + kKernelRoot + "a.rst.gz", "Alpha\n=====\n\nThe ``a`` driver.\n");
  write_text(root + "/" + kKernelRoot + "b.rst", ".. SPDX-License-Identifier: GPL-2.0\n\nBeta text.\n");
  write_gzip(root + "/" + kKernelRoot + "sub/c.rst.gz", "Gamma *text*.\n");
  write_gzip(root + "/" + kKernelRoot + "translations/zh_CN/a.rst.gz", "Not English.\n");
  write_gzip(root + "/" + kKernelRoot + "sub/d.svg.gz", "<svg/>\n");
  const auto docs = dynamoe::data::read_corpus_documents("kernel-docs", root);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].path, kKernelRoot + "a.rst.gz");
  EXPECT_EQ(docs[0].text, "Alpha\n\nThe a driver.\n");
  EXPECT_EQ(docs[1].path, kKernelRoot + "b.rst");
  EXPECT_EQ(docs[1].text, "Beta text.\n");
  EXPECT_EQ(docs[2].path, kKernelRoot + "sub/c.rst.gz");
  EXPECT_EQ(docs[2].text, "Gamma text.\n");

  write_text(root + "/" + kKernelRoot + "bad.rst.gz", std::string("\x1f\x8b\x08\x00garbage", 12));
  expect_error([&] { dynamoe::data::read_corpus_documents("kernel-docs", root); }, {"bad.rst.gz", "gzip"});
}

TEST(Corpus, FakeJargonPackage) {
  ScratchDir dir;
  const std::string root = dir.file("pkg");
  write_gzip(root + "/" + kJargonFile, kFakeJargon);
  const auto docs = dynamoe::data::read_corpus_documents("jargon", root);
  ASSERT_EQ(docs.size(), 4u);  // sorted by path: "#Chapter 1...", "#Part II...", "#hack", "#hacker"
  EXPECT_EQ(docs[0].path, kJargonFile + "#Chapter 1. Hacker Slang");
  EXPECT_EQ(docs[2].path, kJargonFile + "#hack");
  EXPECT_EQ(docs[3].path, kJargonFile + "#hacker");
}

TEST(Corpus, UnexpectedPackageLayoutIsAClearError) {
  ScratchDir dir;
  fs::create_directories(dir.file("pkg/usr/share/doc/jargon-text"));
  expect_error([&] { dynamoe::data::read_corpus_documents("python-docs", dir.file("pkg")); },
               {"python3.11-doc", "no folder usr/share/doc/python3.11/html/_sources"});
  expect_error([&] { dynamoe::data::read_corpus_documents("jargon", dir.file("pkg")); },
               {"jargon-text", "no file usr/share/doc/jargon-text/jargon.txt.gz"});
  fs::create_directories(dir.file("pkg/" + kPyRoot));
  expect_error([&] { dynamoe::data::read_corpus_documents("python-docs", dir.file("pkg")); }, {"holds no documents"});
}

// ---------------------------------------------------------------------------------------------
// Token files

TEST(TokenFile, RoundTripIsLittleEndianUint16) {
  ScratchDir dir;
  const std::vector<int32_t> ids = {0, 1, 255, 256, 50256, 65535};
  const std::string path = dir.file("t.bin");
  dynamoe::data::write_token_file(path, ids);
  const std::string bytes = dynamoe::read_file(path);
  EXPECT_EQ(bytes, std::string("\x00\x00\x01\x00\xff\x00\x00\x01\x50\xc4\xff\xff", 12));
  dynamoe::data::TokenFile f(path);
  EXPECT_EQ(f.size(), 6);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(file_ids(f), (std::vector<uint16_t>{0, 1, 255, 256, 50256, 65535}));
  dynamoe::data::TokenFile moved(std::move(f));
  EXPECT_EQ(moved.size(), 6);
  EXPECT_EQ(moved.data()[4], 50256);
  EXPECT_EQ(f.size(), 0);  // NOLINT(bugprone-use-after-move): moved-from is empty
  dynamoe::data::write_token_file(dir.file("empty.bin"), {});
  dynamoe::data::TokenFile empty(dir.file("empty.bin"));
  EXPECT_EQ(empty.size(), 0);
  moved = std::move(empty);
  EXPECT_EQ(moved.size(), 0);

  expect_error([&] { dynamoe::data::write_token_file(dir.file("big.bin"), {1, 65536}); },
               {"big.bin", "token 65536 at position 1", "uint16"});
  expect_error([&] { dynamoe::data::write_token_file(dir.file("neg.bin"), {-1}); }, {"token -1 at position 0"});
  EXPECT_FALSE(fs::exists(dir.file("big.bin")));
  expect_error([&] { dynamoe::data::TokenFile(dir.file("missing.bin")); }, {"missing.bin", "cannot open"});
}

// A valid byte-tokenized corpus in <dir>/data/python-docs/byte.
std::string make_token_corpus(const ScratchDir& dir) {
  FetchOptions opts;
  opts.data_dir = dir.file("data");
  return dynamoe::data::convert_corpus_package("python-docs", make_python_package(dir), "1.0", "byte", opts);
}

TEST(TokenFile, CorruptFilesAreClearErrors) {
  ScratchDir dir;
  const std::string out = make_token_corpus(dir);
  const std::string val = out + "/val.bin", train = out + "/train.bin", meta = out + "/meta.json";
  const std::string good_val = dynamoe::read_file(val), good_meta = dynamoe::read_file(meta);
  const int64_t val_tokens = static_cast<int64_t>(good_val.size() / 2);

  dynamoe::write_file_atomic(val, good_val + "x");  // odd size
  expect_error([&] { dynamoe::data::open_token_corpus(out); }, {val, "odd size", "2 bytes (uint16) per token"});

  dynamoe::write_file_atomic(val, good_val.substr(0, good_val.size() - 2));  // truncated
  expect_error([&] { dynamoe::data::open_token_corpus(out); },
               {val + ": " + std::to_string(good_val.size() - 2) + " bytes, expected 2 x " + std::to_string(val_tokens) +
                " tokens (truncated?)"});

  std::string flipped = good_val;
  flipped[10] = static_cast<char>(flipped[10] ^ 0x01);  // same size, different bytes
  dynamoe::write_file_atomic(val, flipped);
  expect_error([&] { dynamoe::data::open_token_corpus(out); }, {val, "checksum", "does not match"});

  // An id out of range with a checksum that matches: 300 at position 3 for the byte vocab 257.
  dynamoe::data::write_token_file(val, {104, 105, 256, 300, 256});
  nlohmann::json m = nlohmann::json::parse(good_meta);
  m["splits"]["val"]["tokens"] = 5;
  m["splits"]["val"]["checksum"] = dynamoe::fnv1a64_hex(dynamoe::read_file(val));
  dynamoe::write_file_atomic(meta, m.dump());
  expect_error([&] { dynamoe::data::open_token_corpus(out); },
               {val + ": token 300 at position 3 is out of range for vocab 257"});

  dynamoe::write_file_atomic(val, good_val);
  // An end-of-text id outside the vocabulary; another tokenizer than the config's.
  m = nlohmann::json::parse(good_meta);
  m["eot_id"] = 70000;
  dynamoe::write_file_atomic(meta, m.dump());
  expect_error([&] { dynamoe::data::open_token_corpus(out); },
               {meta, "eot_id 70000 is not a token of the vocabulary (0..256)"});
  dynamoe::write_file_atomic(meta, good_meta);
  expect_error([&] { dynamoe::data::open_token_corpus(out, "gpt2"); },
               {meta, "tokenizer is 'byte' but data.tokenizer is 'gpt2'"});
  dynamoe::write_file_atomic(meta, "{\"vocab_size\": 257");
  expect_error([&] { dynamoe::data::open_token_corpus(out); }, {meta, "not valid JSON"});
  fs::remove(meta);
  expect_error([&] { dynamoe::data::open_token_corpus(out); }, {meta, "missing"});
  std::string why;
  EXPECT_FALSE(dynamoe::data::token_corpus_ready(out, &why));
  EXPECT_NE(why.find("meta.json"), std::string::npos) << why;
  dynamoe::write_file_atomic(meta, good_meta);
  EXPECT_TRUE(dynamoe::data::token_corpus_ready(out, &why)) << why;
  fs::remove(train);
  expect_error([&] { dynamoe::data::open_token_corpus(out); }, {train, "cannot open"});
}

// ---------------------------------------------------------------------------------------------
// Caches and failures (no network: apt-get is hidden by an empty PATH)

fs::file_time_type mtime(const std::string& path) { return fs::last_write_time(path); }

TEST(Corpus, CachesAreUsedAndForceRedownloads) {
  ScratchDir dir;
  const std::string out = make_token_corpus(dir);
  const std::string text_dir = dir.file("data/python-docs/text");
  const auto train_time = mtime(out + "/train.bin"), meta_time = mtime(out + "/meta.json");
  const std::string train_bytes = dynamoe::read_file(out + "/train.bin");
  ScopedEnv no_programs("PATH", dir.file("no-such-bin"));
  fs::create_directories(dir.file("tmp"));
  ScopedEnv tmpdir("TMPDIR", dir.file("tmp"));
  FetchOptions opts;
  opts.data_dir = dir.file("data");
  std::ostringstream log;
  opts.log = &log;

  // The token folder is complete: nothing is done, nothing rewritten.
  EXPECT_EQ(dynamoe::data::fetch_corpus("python-docs", "byte", opts), out);
  EXPECT_NE(log.str().find("nothing to do"), std::string::npos) << log.str();
  EXPECT_EQ(mtime(out + "/train.bin"), train_time);
  EXPECT_EQ(mtime(out + "/meta.json"), meta_time);

  // Without the token folder, the clean-text cache is tokenized again (no download).
  fs::remove_all(out);
  log.str("");
  EXPECT_EQ(dynamoe::data::fetch_corpus("python-docs", "byte", opts), out);
  EXPECT_NE(log.str().find("using the clean text"), std::string::npos) << log.str();
  EXPECT_EQ(dynamoe::read_file(out + "/train.bin"), train_bytes);

  // A damaged token file is noticed and rebuilt from the clean text.
  dynamoe::write_file_atomic(out + "/train.bin", "xx");
  log.str("");
  EXPECT_EQ(dynamoe::data::fetch_corpus("python-docs", "byte", opts), out);
  EXPECT_NE(log.str().find("cache not usable"), std::string::npos) << log.str();
  EXPECT_EQ(dynamoe::read_file(out + "/train.bin"), train_bytes);

  // force downloads again: apt-get cannot be run; the old files stay as they were.
  opts.force = true;
  const auto text_time = mtime(text_dir + "/train.txt");
  expect_error([&] { dynamoe::data::fetch_corpus("python-docs", "byte", opts); },
               {"cannot run 'apt-get'", "python3.11-doc"});
  EXPECT_EQ(mtime(text_dir + "/train.txt"), text_time);
  EXPECT_TRUE(dynamoe::data::token_corpus_ready(out));

  // A damaged clean-text cache is not used (and the download is tried).
  opts.force = false;
  fs::remove_all(out);
  dynamoe::write_file_atomic(text_dir + "/val.txt", "changed");
  log.str("");
  expect_error([&] { dynamoe::data::fetch_corpus("python-docs", "byte", opts); }, {"cannot run 'apt-get'"});
  EXPECT_NE(log.str().find("clean-text cache not usable"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("checksum"), std::string::npos) << log.str();
  EXPECT_TRUE(fs::is_empty(dir.file("tmp")));  // the download's temp dir was removed
}

TEST(DebianPackage, UnknownPackageIsAClearError) {
  if (dynamoe::find_program("apt-get").empty()) GTEST_SKIP() << "apt-get is not installed";
  expect_error([] { dynamoe::data::DebianPackage pkg("dynamoe-no-such-package"); },
               {"cannot download Debian package 'dynamoe-no-such-package'", "apt-get update"});
}

TEST(CorpusCli, InfoAndUsage) {
  using dynamoe::testutil::cli;
  using dynamoe::testutil::run_command;
  ScratchDir dir;
  make_token_corpus(dir);
  const std::string data = " --data-dir " + dir.file("data");
  auto info = run_command(cli() + " data info python-docs --tokenizer byte" + data);
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_NE(info.output.find("python3.11-doc 1.0"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("train: 38 documents"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("val: 2 documents"), std::string::npos) << info.output;
  auto missing = run_command(cli() + " data info jargon --tokenizer byte" + data);
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("dynamoe data fetch jargon --tokenizer byte"), std::string::npos) << missing.output;
  auto misuse = run_command(cli() + " data fetch mnist --tokenizer byte" + data);
  EXPECT_EQ(misuse.exit_code, 2) << misuse.output;
  auto unknown = run_command(cli() + " data fetch wiki" + data);
  EXPECT_EQ(unknown.exit_code, 1) << unknown.output;
  EXPECT_NE(unknown.output.find("mnist, fashion-mnist, gpt2, python-docs, kernel-docs, jargon"), std::string::npos)
      << unknown.output;
  auto cached = run_command(cli() + " data fetch python-docs --tokenizer byte" + data);
  EXPECT_EQ(cached.exit_code, 0) << cached.output;
  EXPECT_NE(cached.output.find("nothing to do"), std::string::npos) << cached.output;
}

// The real thing: apt-get download jargon-text (0.7 MB) from the Debian mirror. Set
// DYNAMOE_SKIP_NETWORK_TESTS=1 to skip it on a machine without one.
TEST(Corpus, RealJargonFetch) {
  if (std::getenv("DYNAMOE_SKIP_NETWORK_TESTS")) GTEST_SKIP() << "DYNAMOE_SKIP_NETWORK_TESTS is set";
  ScratchDir dir;
  FetchOptions opts;
  opts.data_dir = dir.file("data");
  std::ostringstream log;
  opts.log = &log;
  const std::string out = dynamoe::data::fetch_corpus("jargon", "byte", opts);
  const dynamoe::data::TokenCorpus c = dynamoe::data::open_token_corpus(out);
  const nlohmann::json& m = c.meta;
  EXPECT_EQ(m["debian_package"], "jargon-text");
  EXPECT_FALSE(m["package_version"].get<std::string>().empty());
  EXPECT_GT(m["splits"]["train"]["documents"].get<int64_t>(), 2000) << log.str();
  EXPECT_GT(m["splits"]["val"]["documents"].get<int64_t>(), 50);
  EXPECT_GT(c.train.size(), 1000000);
  EXPECT_GT(c.val.size(), 30000);
  const std::string text = dynamoe::read_file(dir.file("data/jargon/text/train.txt"));
  EXPECT_NE(text.find("hacker"), std::string::npos);
  EXPECT_EQ(text.find("{kludge}"), std::string::npos);  // cross-references lost their braces
}

}  // namespace
