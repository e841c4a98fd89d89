// The parser against real mail: every corpus message parses with consistent offsets and an exact
// cache round trip; a selection of messages is checked against the structure read off the
// message by hand.

#include <gtest/gtest.h>

#include <chrono>
#include <iostream>

#include "mailaccess/mime.hpp"
#include "mime_test_util.hpp"

namespace mailaccess::mime {
namespace {

using test::body_of;
using test::check_structure;
using test::corpus_root;
using test::header_of;
using test::load_crlf;

bool is_message_file(const test::fs::path& p) {
  auto ext = p.extension().string();
  return ext == ".eml" || (ext == ".txt" && p.parent_path().filename() != "partial" &&
                           p.filename() != "README.txt");
}

TEST(MimeCorpus, EveryMessageParses) {
  const test::fs::path root = corpus_root();
  ASSERT_TRUE(test::fs::is_directory(root)) << root;
  std::vector<test::fs::path> files;
  for (const auto& entry : test::fs::recursive_directory_iterator(root)) {
    if (entry.is_regular_file() && is_message_file(entry.path())) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  ASSERT_FALSE(files.empty());
  std::size_t parts = 0;
  uint64_t bytes = 0;
  auto started = std::chrono::steady_clock::now();
  for (const auto& path : files) {
    SCOPED_TRACE(path.string());
    std::string lf = test::read_file(path);
    std::string msg = test::to_crlf(lf);
    MessageStructure s = parse(msg);
    ASSERT_NO_FATAL_FAILURE(check_structure(msg, s));
    std::string blob = serialize(s);
    auto back = deserialize(blob);
    ASSERT_TRUE(back.has_value()) << back.error().detail;
    ASSERT_TRUE(*back == s);
    // The LF form parses too, with offsets into its own bytes.
    MessageStructure s_lf = parse(lf);
    ASSERT_NO_FATAL_FAILURE(check_structure(lf, s_lf));
    // Decoding every leaf does not fail and yields text.
    std::vector<const BodyPart*> stack{&s.root};
    while (!stack.empty()) {
      const BodyPart* p = stack.back();
      stack.pop_back();
      ++parts;
      for (const BodyPart& c : p->children) stack.push_back(&c);
      if (p->children.empty() && p->is("text")) (void)decode_part_text(msg, *p);
    }
    if (s.envelope.subject) (void)decode_header_value(*s.envelope.subject);
    bytes += msg.size();
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - started)
                .count();
  std::cout << "[ corpus   ] " << root.string() << ": " << files.size() << " messages, " << parts
            << " parts, " << bytes << " bytes in " << ms << " ms\n";
}

class KnownMessage : public ::testing::Test {
 protected:
  MessageStructure load(const std::string& relative) {
    auto path = corpus_root() / relative;
    EXPECT_TRUE(test::fs::exists(path)) << path;
    msg_ = load_crlf(path);
    MessageStructure s = parse(msg_);
    check_structure(msg_, s);
    return s;
  }
  std::string msg_;
};

TEST_F(KnownMessage, Rfc2049MultipartExample) {
  MessageStructure s = load("mime-edge/stalwart-mail-parser/rfc/000.eml");
  EXPECT_EQ(s.envelope.subject, "A multipart example");
  EXPECT_EQ(s.envelope.date, "Fri, 07 Oct 1994 16:15:05 -0700 (PDT)");
  ASSERT_EQ(s.envelope.from.size(), 1u);
  EXPECT_EQ(s.envelope.from[0], (Address{"Nathaniel Borenstein", std::nullopt, "nsb", "nsb.fv.com"}));
  ASSERT_EQ(s.envelope.to.size(), 1u);
  EXPECT_EQ(s.envelope.to[0], (Address{"Ned Freed", std::nullopt, "ned", "innosoft.com"}));
  EXPECT_EQ(find_param(s.root.params, "boundary"), "unique-boundary-1");
  const auto& c = s.root.children;
  ASSERT_EQ(c.size(), 5u);
  // 1: no header fields → text/plain; charset=us-ascii.
  EXPECT_EQ(header_of(msg_, c[0]), "\r\n");
  EXPECT_EQ(c[0].params, (Params{{"charset", "us-ascii"}}));
  EXPECT_TRUE(body_of(msg_, c[0]).starts_with("... Some text appears here ..."));
  EXPECT_TRUE(body_of(msg_, c[0]).ends_with("next part.]\r\n"));
  EXPECT_EQ(c[0].body_lines, 7u);
  EXPECT_EQ(c[1].params, (Params{{"charset", "US-ASCII"}}));
  // 3: multipart/parallel with audio and image.
  ASSERT_TRUE(c[2].is("multipart", "parallel"));
  ASSERT_EQ(c[2].children.size(), 2u);
  EXPECT_TRUE(c[2].children[0].is("audio", "basic"));
  EXPECT_EQ(c[2].children[0].encoding, "base64");
  EXPECT_TRUE(c[2].children[1].is("image", "jpeg"));
  EXPECT_EQ(body_of(msg_, c[2].children[1]), "... base64-encoded image data goes here ...\r\n");
  EXPECT_TRUE(c[3].is("text", "enriched"));
  // 5: message/rfc822 whose header fields hold only comments.
  ASSERT_TRUE(c[4].is_message_rfc822());
  EXPECT_EQ(c[4].message_envelope->subject, "(subject in US-ASCII)");
  EXPECT_TRUE(c[4].message_envelope->from.empty());
  const BodyPart& inner = c[4].children[0];
  EXPECT_EQ(inner.type, "Text");
  EXPECT_EQ(inner.subtype, "plain");
  EXPECT_EQ(inner.params, (Params{{"charset", "ISO-8859-1"}}));
  EXPECT_EQ(inner.encoding, "Quoted-printable");
  EXPECT_EQ(body_of(msg_, inner), "... Additional text in ISO-8859-1 goes here ...\r\n");
}

TEST_F(KnownMessage, MessageWrappingADigest) {
  // Starts with an mbox "From " line, then a message/rfc822 holding a multipart/digest whose
  // boundary lines carry a trailing space.
  MessageStructure s = load("mime-edge/mimekit/messages/multipart-digest.txt");
  ASSERT_EQ(s.envelope.from.size(), 1u);
  EXPECT_EQ(s.envelope.from[0].mailbox, "user");
  EXPECT_EQ(s.envelope.from[0].host, "domain.org");
  ASSERT_TRUE(s.root.is_message_rfc822());
  EXPECT_EQ(s.root.message_envelope->subject, "submsg");
  const BodyPart& digest = s.root.children[0];
  ASSERT_TRUE(digest.is("multipart", "digest"));
  ASSERT_EQ(digest.children.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const BodyPart& m = digest.children[std::size_t(i)];
    ASSERT_TRUE(m.is_message_rfc822());
    std::string n = "m" + std::to_string(i + 1);
    EXPECT_EQ(m.message_envelope->subject, n);
    EXPECT_EQ(m.message_envelope->from[0].mailbox, n);
    EXPECT_EQ(body_of(msg_, m.children[0]), n + " body\r\n");
  }
  EXPECT_TRUE(body_of(msg_, digest).ends_with("--foo--\r\n\r\nepilogue\r\n\r\n"));
}

TEST_F(KnownMessage, EmbeddedMessage) {
  MessageStructure s = load("mime-edge/mimekit/messages/simple-embedded-message.eml");
  EXPECT_EQ(s.envelope.message_id,
            "<54AD68C9E3B0184CAC6041320424FD1B5B81E74D@localhost.localdomain>");
  ASSERT_EQ(s.root.children.size(), 2u);
  EXPECT_EQ(body_of(msg_, s.root.children[0]), "This is the message body.\r\n");
  EXPECT_EQ(s.root.children[0].params, (Params{{"charset", "utf-8"}}));
  const BodyPart& m = s.root.children[1];
  ASSERT_TRUE(m.is_message_rfc822());
  EXPECT_EQ(m.message_envelope->subject, "embedded message");
  EXPECT_EQ(m.message_envelope->date, "Tue, 12 Nov 2013 09:12:42 -0500");
  EXPECT_EQ(m.message_envelope->to[0].host, "example.com");
  EXPECT_EQ(body_of(msg_, m.children[0]), "This is the embedded message body.\r\n");
}

TEST_F(KnownMessage, EmptyMultipartAlternative) {
  MessageStructure s = load("mime-edge/mimekit/messages/empty-multipart.txt");
  ASSERT_EQ(s.root.children.size(), 2u);
  const BodyPart& alt = s.root.children[0];
  ASSERT_TRUE(alt.is("multipart", "alternative"));
  ASSERT_EQ(alt.children.size(), 1u);  // the empty stand-in part
  EXPECT_EQ(alt.children[0].body_size, 0u);
  EXPECT_TRUE(s.root.children[1].is("text", "plain"));
  EXPECT_EQ(body_of(msg_, s.root.children[1]),
            "This part should be on the same level as the multipart/alternative and not a "
            "child.\r\n");
}

TEST_F(KnownMessage, JapaneseIso2022Jp) {
  MessageStructure s = load("mime-edge/mimekit/messages/japanese.txt");
  EXPECT_EQ(decode_header_value(*s.envelope.subject), "日本語メールテスト (testing Japanese emails)");
  EXPECT_EQ(s.envelope.from[0].name, "Atsushi Eno");
  EXPECT_EQ(decode_part_text(msg_, s.root),
            "Let's see if both subject and body works fine...\r\n\r\n"
            "日本語が\r\n正常に\r\n送れているか\r\nテスト.\r\n");
}

TEST_F(KnownMessage, MalformedBoundaries) {
  // 000: an empty part, two parts whose header runs into the next boundary, a close-delimiter.
  MessageStructure s = load("mime-edge/stalwart-mail-parser/malformed/000.eml");
  ASSERT_EQ(s.root.children.size(), 4u);
  EXPECT_EQ(s.root.children[0].header_size, 0u);
  EXPECT_EQ(header_of(msg_, s.root.children[1]), "Content-Type: text/plain");
  EXPECT_EQ(header_of(msg_, s.root.children[2]), "Content-Type: text/plain");
  EXPECT_TRUE(s.root.children[3].is("text", "html"));
  for (const auto& c : s.root.children) EXPECT_EQ(c.body_size, 0u);

  // 001: "--ab" ends the inner multipart (boundary "a") that never saw a part of its own.
  s = load("mime-edge/stalwart-mail-parser/malformed/001.eml");
  ASSERT_EQ(s.root.children.size(), 2u);
  EXPECT_TRUE(s.root.children[0].is("multipart", "mixed"));
  EXPECT_EQ(s.root.children[0].children.size(), 1u);
  EXPECT_EQ(body_of(msg_, s.root.children[1]), "--a\r\n\r\n");

  // 003: the same boundary nested: the innermost multipart takes the line.
  s = load("mime-edge/stalwart-mail-parser/malformed/003.eml");
  ASSERT_EQ(s.root.children.size(), 1u);
  ASSERT_EQ(s.root.children[0].children.size(), 1u);
  EXPECT_EQ(body_of(msg_, s.root.children[0].children[0]), "body\r\n");

  // 007: "--ab" before the inner header ended: it is the outer "a" boundary (prefix match).
  s = load("mime-edge/stalwart-mail-parser/malformed/007.eml");
  ASSERT_EQ(s.root.children.size(), 3u);
  EXPECT_TRUE(s.root.children[0].is("multipart", "mixed"));
  EXPECT_EQ(s.root.children[0].body_size, 0u);
  EXPECT_TRUE(s.root.children[1].is("text", "plain"));
  EXPECT_EQ(s.root.children[2].header_size, 0u);
}

TEST_F(KnownMessage, EncodedWordsInParameters) {
  MessageStructure s = load("mime-edge/mime4j-testmsgs/russian-headers.eml");
  auto name = find_param(s.root.params, "name");
  ASSERT_TRUE(name.has_value());
  EXPECT_EQ(*name, "=?koi8-r?B?89DJ08/LLmRvYw==?=");  // kept raw, as BODYSTRUCTURE sends it
  EXPECT_EQ(decode_header_value(*name), "Список.doc");
  EXPECT_EQ(s.root.disposition, "attachment");
  EXPECT_EQ(find_param(s.root.disposition_params, "filename"), *name);
  EXPECT_EQ(body_of(msg_, s.root), "A simple body.\r\n");
}

TEST_F(KnownMessage, NoHeaderAtAll) {
  // Two lines of text and no empty line: all header (RFC 5322 §2.1 ends it at the empty line
  // only), with an empty body, as Dovecot reads it.
  MessageStructure s = load("mime-edge/mime4j-testmsgs/malformedHeaderStartsBody-noheader.eml");
  EXPECT_TRUE(header_of(msg_, s.root).starts_with("This is a simple message not having headers."));
  EXPECT_EQ(s.root.header_size, msg_.size());
  EXPECT_EQ(s.root.body_size, 0u);
  ASSERT_EQ(s.headers.size(), 2u);
  EXPECT_EQ(s.headers[0].second, "");
  EXPECT_EQ(s.envelope, Envelope{});
}

TEST_F(KnownMessage, SignedHamFromExmhList) {
  MessageStructure s = load("spamassassin/easy_ham/00988.2154210bb53f94daded7a622e26225a1.eml");
  const Envelope& e = s.envelope;
  EXPECT_EQ(e.subject, "Re: Sorting");
  EXPECT_EQ(e.date, "Tue, 10 Sep 2002 09:23:50 +0200");
  EXPECT_EQ(e.message_id, "<200209100724.g8A7O9jH004727@fsck.intern.waldner.priv.at>");
  EXPECT_EQ(e.in_reply_to,
            "Your message of    \"Mon, 09 Sep 2002 22:06:58 CDT.\"    <3642.1031627218@dimebox>");
  EXPECT_EQ(e.from[0], (Address{"Robert Waldner", std::nullopt, "waldner", "waldner.priv.at"}));
  EXPECT_EQ(e.sender[0].mailbox, "exmh-users-admin");
  EXPECT_EQ(e.reply_to[0].mailbox, "exmh-users");
  EXPECT_EQ(e.to[0].host, "spamassassin.taint.org");
  ASSERT_TRUE(s.root.is("multipart", "signed"));
  EXPECT_EQ(s.root.params, (Params{{"boundary", "----------=_1031642648-417-32"},
                                   {"micalg", "pgp-sha1"},
                                   {"protocol", "application/pgp-signature"}}));
  ASSERT_EQ(s.root.children.size(), 2u);
  EXPECT_TRUE(s.root.children[0].is("text", "plain"));
  const BodyPart& sig = s.root.children[1];
  EXPECT_TRUE(sig.is("application", "pgp-signature"));
  EXPECT_EQ(sig.params, (Params{{"name", "signature.ng"}}));
  EXPECT_EQ(sig.disposition, "inline");
  EXPECT_EQ(sig.disposition_params, (Params{{"filename", "signature.ng"}}));
  EXPECT_TRUE(body_of(msg_, sig).starts_with("-----BEGIN PGP SIGNATURE-----\r\n"));
  EXPECT_TRUE(body_of(msg_, sig).ends_with("-----END PGP SIGNATURE-----\r\n"));
  EXPECT_EQ(find_header(s, "X-Mailman-Version"), "2.0.1");
}

TEST_F(KnownMessage, SpamWithGroupAndUnclosedMultipart) {
  MessageStructure s = load("spamassassin/spam/00022.8203cdf03888f656dc0381701148f73d.eml");
  const Envelope& e = s.envelope;
  EXPECT_EQ(e.from[0], (Address{"Dr Bello Ahmed", std::nullopt, "bell1hmed", "yahoo.ca"}));
  EXPECT_EQ(e.sender, e.from);
  EXPECT_EQ(e.reply_to[0], (Address{std::nullopt, std::nullopt, "bell1hmed", "yahoo.ca"}));
  ASSERT_EQ(e.to.size(), 2u);
  EXPECT_EQ(e.to[0].mailbox, "undisclosed-recipients");
  EXPECT_FALSE(e.to[0].host.has_value());
  EXPECT_EQ(e.to[1], Address{});
  ASSERT_EQ(s.root.children.size(), 2u);
  const BodyPart& text = s.root.children[0];
  EXPECT_EQ(text.encoding, "quoted-printable");
  std::string decoded = decode_part_text(msg_, text);
  EXPECT_NE(decoded.find("I expect your response in time (within 48 hours) as"), std::string::npos);
  EXPECT_TRUE(decoded.ends_with("Dr. Bello Ahmed\r\n\r\n"));
  const BodyPart& att = s.root.children[1];
  EXPECT_EQ(att.disposition_params, (Params{{"filename", "111111111111111111.txt"}}));
  EXPECT_EQ(body_of(msg_, att), "\r\n\r\n");  // no close-delimiter: runs to the end
  EXPECT_EQ(att.body_lines, 2u);
}

TEST_F(KnownMessage, EncodedSubjectsInHam) {
  MessageStructure s = load("spamassassin/hard_ham/00149.f6fddcb1750a61e5e085e22a4fa08912.eml");
  EXPECT_EQ(decode_header_value(*s.envelope.subject), "Matrox Parhelia™ now available");
  s = load("spamassassin/easy_ham/02434.37126367f2a918fead5ff8ea834cc334.eml");
  EXPECT_EQ(decode_header_value(*s.envelope.subject),
            "Re: RE: [zzzzteana] Sitting Bull über alles [Long]");
}

TEST_F(KnownMessage, MailmanWrappedListPost) {
  MessageStructure s = load("usrp-users/006099.eml");
  const Envelope& e = s.envelope;
  EXPECT_EQ(e.subject, "[USRP-users] Re: N320 LO leakage cancelation");
  EXPECT_EQ(e.in_reply_to, "5290031e-4f10-22f7-20a7-b1635d73a242@gmail.com");
  EXPECT_EQ(e.from[0], (Address{std::nullopt, std::nullopt, "seckinoncu8070", "gmail.com"}));
  ASSERT_TRUE(s.root.is("multipart", "mixed"));
  ASSERT_EQ(s.root.children.size(), 3u);
  const BodyPart& alt = s.root.children[0];
  ASSERT_TRUE(alt.is("multipart", "alternative"));
  ASSERT_EQ(alt.children.size(), 2u);
  EXPECT_TRUE(alt.children[1].is("text", "html"));
  std::string plain = decode_part_text(msg_, alt.children[0]);
  EXPECT_NE(plain.find("but it didn’t change the results. There is still LO leakage on "
                       "transmitter."),
            std::string::npos);
  const BodyPart& png = s.root.children[1];
  EXPECT_TRUE(png.is("image", "png"));
  EXPECT_EQ(find_param(png.disposition_params, "filename"), "Screenshot .png");
  EXPECT_EQ(decode_part_body(msg_, png).substr(0, 8), "\x89PNG\r\n\x1A\n");
  const BodyPart& footer = s.root.children[2];
  EXPECT_EQ(footer.disposition, "inline");
  EXPECT_EQ(footer.body_lines, 3u);
  EXPECT_TRUE(body_of(msg_, footer).ends_with("usrp-users-leave@lists.ettus.com\r\n"));
}

TEST_F(KnownMessage, HugeEncodedWordHeader) {
  MessageStructure s = load("mime-edge/mimekit/messages/stack-overflow.txt");
  ASSERT_FALSE(s.envelope.to.empty());
  EXPECT_EQ(s.envelope.to[0], (Address{"test", std::nullopt, "test", "test.com"}));
  std::string decoded = decode_header_value(*find_header(s, "to"));
  EXPECT_NE(decoded.find("date>2017-08-20T10:08:28.617</pr"), std::string::npos);
}

}  // namespace
}  // namespace mailaccess::mime
