// The LMDB backend in one process: mailboxes, append and range reads, flags and modseq, views and
// refresh(), copy/move, schema refusal, damaged files, map growth, verify and compact.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <lmdb.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "lmdb_store.hpp"
#include "mailaccess/change_bus.hpp"
#include "schema.hpp"
#include "test_util.hpp"

namespace mailaccess::lmdb {
namespace {

using testing::ManualLoop;
using testing::read_all;
using testing::TempDir;
using testing::test_message;

class LmdbStoreTest : public ::testing::Test {
 protected:
  std::string path() const { return dir_.path() + "/mail.lmdb"; }
  std::unique_ptr<spi::Store> open(EnvOptions options = {}) {
    auto store = open_store({"demo", path()}, *bus_, options);
    EXPECT_TRUE(store.has_value()) << (store ? "" : store.error().message + " " +
                                                        store.error().detail);
    return store ? std::move(*store) : nullptr;
  }
  uint32_t append(spi::Store& store, std::string_view box, const std::string& bytes,
                  spi::AppendOptions options = {}) {
    auto stream = store.append(box, options);
    EXPECT_TRUE(stream.has_value());
    if (!stream) return 0;
    // Written in pieces to exercise the streaming path.
    for (std::size_t at = 0; at < bytes.size(); at += 1000) {
      EXPECT_TRUE((*stream)->write(std::string_view(bytes).substr(at, 1000)).has_value());
    }
    auto uid = (*stream)->commit();
    EXPECT_TRUE(uid.has_value()) << (uid ? "" : uid.error().detail);
    return uid ? *uid : 0;
  }
  std::string fetch(spi::Mailbox& box, uint32_t uid) {
    auto reader = box.open_message(uid);
    EXPECT_TRUE(reader.has_value());
    return reader ? read_all(**reader) : std::string();
  }

  TempDir dir_;
  std::unique_ptr<spi::ChangeBus> bus_ = make_change_bus();
};

TEST_F(LmdbStoreTest, InboxExistsAndNamesAreChecked) {
  auto store = open();
  auto list = store->list();
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "INBOX");
  EXPECT_TRUE(store->status("inbox").has_value());  // INBOX is case-insensitive
  for (const char* bad : {"", "/a", "a//b", "a/", "a/./b", "..", "a\x01", "bad\xff", "\xc3"}) {
    auto r = store->create(bad, spi::SpecialUse::None);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::Params) << bad;
  }
  EXPECT_EQ(store->create("INBOX", spi::SpecialUse::None).error().code, ErrorCode::Exists);
  EXPECT_EQ(store->remove("INBOX").error().code, ErrorCode::NotPossible);
  EXPECT_EQ(store->status("nope").error().code, ErrorCode::NotFound);
  EXPECT_EQ(store->append("nope", {}).error().code, ErrorCode::NotFound);
  EXPECT_TRUE(store->create("Entw\xc3\xbcrfe", spi::SpecialUse::Drafts));  // UTF-8 is fine
  spi::AppendOptions bad_keyword;
  bad_keyword.flags.keywords = {"two words"};
  EXPECT_EQ(store->append("INBOX", bad_keyword).error().code, ErrorCode::Params);
}

TEST_F(LmdbStoreTest, CreateRenameRemoveHierarchy) {
  auto store = open();
  ASSERT_TRUE(store->create("a/b/c", spi::SpecialUse::None));
  ASSERT_TRUE(store->create("Sent", spi::SpecialUse::Sent));
  ASSERT_TRUE(store->set_subscribed("Sent", true));
  auto list = store->list();
  ASSERT_TRUE(list);
  std::map<std::string, spi::MailboxEntry> by_name;
  for (auto& e : *list) by_name[e.name] = e;
  ASSERT_EQ(by_name.size(), 5u);
  EXPECT_TRUE(by_name["a"].has_children);
  EXPECT_FALSE(by_name["a/b/c"].has_children);
  EXPECT_EQ(by_name["Sent"].special_use, spi::SpecialUse::Sent);
  EXPECT_TRUE(by_name["Sent"].subscribed);

  append(*store, "a/b", test_message(1));
  uint32_t uidvalidity = store->status("a/b")->uidvalidity;
  ASSERT_TRUE(store->rename("a", "x/y"));
  EXPECT_EQ(store->status("a/b").error().code, ErrorCode::NotFound);
  auto moved = store->status("x/y/b");
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->uidvalidity, uidvalidity);  // renaming keeps UIDVALIDITY
  EXPECT_EQ(moved->messages, 1u);
  EXPECT_TRUE(store->status("x/y/b/c"));
  EXPECT_EQ(store->rename("x", "x/y/z").error().code, ErrorCode::NotPossible);
  EXPECT_EQ(store->rename("Sent", "x").error().code, ErrorCode::Exists);

  // A mailbox with children becomes \Noselect; deleting it again is refused.
  ASSERT_TRUE(store->remove("x/y/b"));
  list = store->list();
  bool noselect = false;
  for (auto& e : *list) noselect = noselect || (e.name == "x/y/b" && e.no_select);
  EXPECT_TRUE(noselect);
  EXPECT_EQ(store->open("x/y/b", false).error().code, ErrorCode::NotPossible);
  EXPECT_EQ(store->remove("x/y/b").error().code, ErrorCode::NotPossible);
  // Deleting the last child takes the \Noselect placeholder with it, but not real parents.
  ASSERT_TRUE(store->remove("x/y/b/c"));
  EXPECT_EQ(store->status("x/y/b").error().code, ErrorCode::NotFound);
  EXPECT_TRUE(store->status("x/y"));

  // A recreated mailbox gets a new UIDVALIDITY and starts from UID 1.
  ASSERT_TRUE(store->create("x/y/b", spi::SpecialUse::None));
  auto again = store->status("x/y/b");
  EXPECT_GT(again->uidvalidity, uidvalidity);
  EXPECT_EQ(again->uidnext, 1u);
}

TEST_F(LmdbStoreTest, AppendConvertsLineEndingsAndReadsRanges) {
  auto store = open();
  std::string lf = "Subject: x\n\nbody\r\nline two\nend\r";
  spi::AppendOptions opts;
  opts.flags.system = spi::kFlagSeen | spi::kFlagFlagged;
  opts.flags.keywords = {"$Junk", "$Forwarded", "$Junk"};
  opts.internal_date = 1700000000;
  opts.internal_tz = -300;
  auto stream = store->append("INBOX", opts);
  ASSERT_TRUE(stream);
  // CR and LF of one line ending arrive in different writes.
  for (char c : lf) ASSERT_TRUE((*stream)->write(std::string_view(&c, 1)));
  auto uid = (*stream)->commit();
  ASSERT_TRUE(uid);
  EXPECT_EQ(*uid, 1u);
  EXPECT_FALSE((*stream)->commit());  // a stream commits once

  std::string big = test_message(10);  // spans several chunks
  ASSERT_GT(big.size(), 2 * kChunkBytes);
  uint32_t uid2 = append(*store, "INBOX", big);
  EXPECT_EQ(uid2, 2u);

  auto box = store->open("INBOX", false);
  ASSERT_TRUE(box);
  ASSERT_EQ((*box)->count(), 2u);
  const auto& info = (*box)->message(0);
  EXPECT_EQ(info.uid, 1u);
  EXPECT_EQ(info.internal_date, 1700000000);
  EXPECT_EQ(info.internal_tz, -300);
  EXPECT_EQ(info.flags.system, spi::kFlagSeen | spi::kFlagFlagged);
  EXPECT_EQ(info.flags.keywords, (std::vector<std::string>{"$Forwarded", "$Junk"}));
  EXPECT_EQ(info.guid.size(), 32u);
  std::string wire = "Subject: x\r\n\r\nbody\r\nline two\r\nend\r";
  EXPECT_EQ(info.size, wire.size());
  EXPECT_EQ(fetch(**box, 1), wire);
  EXPECT_EQ(fetch(**box, 2), big);

  // A range across a chunk boundary reads exactly those bytes.
  auto reader = (*box)->open_message(2);
  ASSERT_TRUE(reader);
  std::string part(100, '\0');
  auto n = (*reader)->read(kChunkBytes - 50, part);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 100u);
  EXPECT_EQ(part, big.substr(kChunkBytes - 50, 100));
  EXPECT_EQ(*(*reader)->read(big.size(), part), 0u);
  auto tail = (*reader)->read(big.size() - 10, part);
  EXPECT_EQ(*tail, 10u);

  auto st = (*box)->structure(2);
  ASSERT_TRUE(st);
  EXPECT_EQ((*st)->size, big.size());
  EXPECT_EQ((*st)->envelope.subject.value_or(""), "message 10");

  auto status = store->status("INBOX");
  EXPECT_EQ(status->messages, 2u);
  EXPECT_EQ(status->unseen, 1u);
  EXPECT_EQ(status->size, wire.size() + big.size());
  EXPECT_EQ(status->uidnext, 3u);
}

TEST_F(LmdbStoreTest, DiscardedAppendLeavesNothing) {
  auto store = open();
  {
    auto stream = store->append("INBOX", {});
    ASSERT_TRUE((*stream)->write(test_message(5)));
  }
  EXPECT_EQ(store->status("INBOX")->messages, 0u);
  EXPECT_EQ(store->status("INBOX")->uidnext, 1u);
}

TEST_F(LmdbStoreTest, FlagsCarryModseqAndUnchangedSince) {
  auto store = open();
  for (unsigned i = 1; i <= 3; ++i) append(*store, "INBOX", test_message(i));
  auto box = std::move(*store->open("INBOX", false));
  uint64_t before = box->status().highest_modseq;
  std::vector<uint32_t> uids{1, 2, 3};
  spi::FlagUpdate add;
  add.flags.system = spi::kFlagSeen;
  add.flags.keywords = {"work"};
  auto r = box->update_flags(uids, add);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->changed, uids);
  EXPECT_GT(box->message(0).modseq, before);
  EXPECT_EQ(box->message(2).flags.keywords, std::vector<std::string>{"work"});
  // Re-adding the same flags changes nothing and assigns no modseq.
  uint64_t m1 = box->message(0).modseq;
  r = box->update_flags(std::vector<uint32_t>{1}, add);
  EXPECT_TRUE(r->changed.empty());
  EXPECT_EQ(box->message(0).modseq, m1);

  // RFC 7162 §3.1.3: UNCHANGEDSINCE below a message's modseq refuses that message.
  spi::FlagUpdate del;
  del.op = spi::FlagOp::Add;
  del.flags.system = spi::kFlagDeleted;
  del.unchanged_since = box->message(0).modseq;
  spi::FlagUpdate bump;
  bump.op = spi::FlagOp::Remove;
  bump.flags.keywords = {"work"};
  ASSERT_TRUE(box->update_flags(std::vector<uint32_t>{2}, bump));
  r = box->update_flags(std::vector<uint32_t>{1, 2}, del);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->changed, std::vector<uint32_t>{1});
  EXPECT_EQ(r->modified, std::vector<uint32_t>{2});

  auto st = store->status("INBOX");
  EXPECT_EQ(st->unseen, 0u);
  EXPECT_EQ(st->deleted, 1u);
  EXPECT_EQ(st->highest_modseq, box->status().highest_modseq);

  spi::FlagUpdate replace;
  replace.op = spi::FlagOp::Replace;
  replace.flags.keywords = {"b", "a"};
  ASSERT_TRUE(box->update_flags(std::vector<uint32_t>{3}, replace));
  EXPECT_EQ(box->message(2).flags.system, 0u);
  EXPECT_EQ(box->message(2).flags.keywords, (std::vector<std::string>{"a", "b"}));

  auto expunged = box->expunge(std::vector<uint32_t>{1, 99});
  ASSERT_TRUE(expunged);
  EXPECT_EQ(*expunged, std::vector<uint32_t>{1});
  EXPECT_EQ(box->count(), 2u);
  EXPECT_EQ(store->status("INBOX")->deleted, 0u);

  auto ro = std::move(*store->open("INBOX", true));
  EXPECT_EQ(ro->update_flags(std::vector<uint32_t>{2}, add).error().code, ErrorCode::NotPossible);
  EXPECT_EQ(ro->expunge(std::vector<uint32_t>{2}).error().code, ErrorCode::NotPossible);
}

TEST_F(LmdbStoreTest, RefreshReportsOthersChangesNotOwn) {
  auto store = open();
  for (unsigned i = 1; i <= 4; ++i) append(*store, "INBOX", test_message(i));
  auto a = std::move(*store->open("INBOX", false));
  auto b = std::move(*store->open("INBOX", false));
  EXPECT_TRUE(a->refresh()->empty());

  spi::FlagUpdate seen;
  seen.flags.system = spi::kFlagSeen;
  ASSERT_TRUE(b->update_flags(std::vector<uint32_t>{2}, seen));
  ASSERT_TRUE(b->expunge(std::vector<uint32_t>{3}));
  append(*store, "INBOX", test_message(5));
  append(*store, "INBOX", test_message(6));
  ASSERT_TRUE(a->update_flags(std::vector<uint32_t>{4}, seen));

  // The view is a snapshot until refresh().
  EXPECT_EQ(a->count(), 4u);
  auto changes = a->refresh();
  ASSERT_TRUE(changes);
  EXPECT_EQ(changes->expunged, std::vector<uint32_t>{3});
  EXPECT_EQ(changes->appended, 2u);
  EXPECT_EQ(changes->flags_changed, std::vector<uint32_t>{2});  // 4 was a's own change
  EXPECT_FALSE(changes->uidvalidity_changed);
  ASSERT_EQ(a->count(), 5u);
  EXPECT_EQ(a->message(1).flags.system, spi::kFlagSeen);
  EXPECT_EQ(a->message(3).uid, 5u);
  EXPECT_EQ(a->message(4).uid, 6u);
  EXPECT_EQ(a->status().uidnext, 7u);
  EXPECT_TRUE(a->refresh()->empty());

  // b sees a's change to 4, the two appends, and no expunge (its own).
  auto bc = b->refresh();
  EXPECT_EQ(bc->flags_changed, std::vector<uint32_t>{4});
  EXPECT_EQ(bc->appended, 2u);
  EXPECT_TRUE(bc->expunged.empty());

  // A message appended and expunged between two refreshes never shows up.
  uint32_t brief = append(*store, "INBOX", test_message(7));
  ASSERT_TRUE(b->refresh());
  ASSERT_TRUE(b->expunge(std::vector<uint32_t>{brief}));
  auto ac = a->refresh();
  EXPECT_EQ(ac->appended, 0u);
  EXPECT_TRUE(ac->expunged.empty());

  // Deleting the mailbox under a view tells the session to close it.
  ASSERT_TRUE(store->create("tmp", spi::SpecialUse::None));
  auto t = std::move(*store->open("tmp", false));
  ASSERT_TRUE(store->remove("tmp"));
  EXPECT_TRUE(t->refresh()->uidvalidity_changed);
}

TEST_F(LmdbStoreTest, ChangesArePublishedOnTheBus) {
  auto store = open();
  ManualLoop loop;
  int calls = 0;
  auto token = bus_->subscribe("demo", "INBOX", loop, [&] { ++calls; });
  append(*store, "INBOX", test_message(1));
  EXPECT_TRUE(loop.run_until([&] { return calls > 0; }, std::chrono::seconds(5)));
  bus_->unsubscribe(token);
}

TEST_F(LmdbStoreTest, CopyAndMoveKeepFlagsDatesAndUidplus) {
  auto store = open();
  ASSERT_TRUE(store->create("Archive", spi::SpecialUse::Archive));
  spi::AppendOptions opts;
  opts.flags.system = spi::kFlagAnswered;
  opts.flags.keywords = {"k"};
  opts.internal_date = 1600000000;
  for (unsigned i = 1; i <= 3; ++i) append(*store, "INBOX", test_message(i * 5), opts);
  append(*store, "Archive", test_message(99));
  auto box = std::move(*store->open("INBOX", false));

  auto copied = box->copy(std::vector<uint32_t>{3, 1}, "Archive");
  ASSERT_TRUE(copied);
  EXPECT_EQ(copied->dest_uidvalidity, store->status("Archive")->uidvalidity);
  EXPECT_EQ(copied->source, (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(copied->dest, (std::vector<uint32_t>{2, 3}));
  EXPECT_EQ(box->count(), 3u);

  auto moved = box->move(std::vector<uint32_t>{2}, "Archive");
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->dest, std::vector<uint32_t>{4});
  EXPECT_EQ(box->count(), 2u);
  EXPECT_EQ(box->copy(std::vector<uint32_t>{1}, "Nope").error().code, ErrorCode::NotFound);

  // Expunging the originals leaves the copies readable (shared bytes are reference counted).
  ASSERT_TRUE(box->expunge(std::vector<uint32_t>{1, 3}));
  auto archive = std::move(*store->open("Archive", false));
  ASSERT_EQ(archive->count(), 4u);
  EXPECT_EQ(fetch(*archive, 2), test_message(5));
  EXPECT_EQ(fetch(*archive, 3), test_message(15));
  EXPECT_EQ(fetch(*archive, 4), test_message(10));
  const auto& info = archive->message(1);
  EXPECT_EQ(info.internal_date, 1600000000);
  EXPECT_EQ(info.flags, opts.flags);
  EXPECT_NE(info.guid, archive->message(2).guid);

  auto report = verify_store(path());
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->problems.empty()) << report->problems.front();
  EXPECT_EQ(report->messages, 4u);
  EXPECT_EQ(report->contents, 4u);
}

TEST_F(LmdbStoreTest, RenamingInboxMovesItsMessages) {
  auto store = open();
  for (unsigned i = 1; i <= 3; ++i) append(*store, "INBOX", test_message(i));
  auto view = std::move(*store->open("INBOX", false));
  ASSERT_TRUE(store->rename("INBOX", "Old"));
  EXPECT_EQ(store->status("INBOX")->messages, 0u);
  auto old = std::move(*store->open("Old", false));
  ASSERT_EQ(old->count(), 3u);
  EXPECT_EQ(old->message(2).uid, 3u);
  EXPECT_EQ(fetch(*old, 2), test_message(2));
  EXPECT_EQ(view->refresh()->expunged, (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_TRUE(verify_store(path())->problems.empty());
}

TEST_F(LmdbStoreTest, ReopenKeepsEverything) {
  {
    auto store = open();
    append(*store, "INBOX", test_message(1));
    ASSERT_TRUE(store->create("Drafts", spi::SpecialUse::Drafts));
  }
  auto store = open();
  EXPECT_EQ(store->status("INBOX")->messages, 1u);
  EXPECT_EQ(append(*store, "INBOX", test_message(2)), 2u);
  auto list = store->list();
  EXPECT_EQ(list->size(), 2u);
}

// Writes a raw value into the environment, as a damaged or future store would have it.
void poke(const std::string& dir, const char* db, std::string_view key, std::string_view value) {
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 16);
  ASSERT_EQ(mdb_env_open(env, dir.c_str(), 0, 0600), 0);
  MDB_txn* txn = nullptr;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  MDB_dbi dbi;
  ASSERT_EQ(mdb_dbi_open(txn, db, 0, &dbi), 0);
  MDB_val k{key.size(), const_cast<char*>(key.data())};
  MDB_val v{value.size(), const_cast<char*>(value.data())};
  ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

TEST_F(LmdbStoreTest, NewerSchemaIsRefusedWithoutTouchingIt) {
  { open(); }
  poke(path(), kDbMeta, kMetaSchema, le32(kSchemaVersion + 1));
  auto data = path() + "/data.mdb";
  auto before = std::filesystem::last_write_time(data);
  auto store = open_store({"demo", path()}, *bus_);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::NotPossible);
  EXPECT_NE(store.error().message.find("newer"), std::string::npos) << store.error().message;
  EXPECT_EQ(std::filesystem::last_write_time(data), before);
}

TEST_F(LmdbStoreTest, TruncatedOrGarbledDataFileIsAClearError) {
  {
    auto store = open();
    for (unsigned i = 1; i <= 40; ++i) append(*store, "INBOX", test_message(i));
  }
  std::string data = path() + "/data.mdb";
  std::string copy = dir_.path() + "/saved.mdb";
  std::filesystem::copy_file(data, copy);
  auto size = std::filesystem::file_size(data);
  std::filesystem::resize_file(data, size / 2);
  auto store = open_store({"demo", path()}, *bus_);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::Corrupt);
  EXPECT_NE(store.error().message.find("truncated"), std::string::npos);

  std::filesystem::resize_file(data, 100);
  store = open_store({"demo", path()}, *bus_);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::Corrupt);

  // Both meta pages overwritten: not an LMDB file any more.
  std::filesystem::copy_file(copy, data, std::filesystem::copy_options::overwrite_existing);
  {
    std::fstream f(data, std::ios::in | std::ios::out | std::ios::binary);
    std::string junk(8192, 'x');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  store = open_store({"demo", path()}, *bus_);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::Corrupt);

  // The intact copy still opens.
  std::filesystem::copy_file(copy, data, std::filesystem::copy_options::overwrite_existing);
  auto good = open();
  ASSERT_TRUE(good);
  EXPECT_EQ(good->status("INBOX")->messages, 40u);
}

TEST_F(LmdbStoreTest, MapGrowsWhenFull) {
  EnvOptions small;
  small.initial_map_bytes = 256 * 1024;
  auto store = open(small);
  std::size_t bytes = 0;
  unsigned i = 0;
  while (bytes < 3 * 1024 * 1024) {
    std::string m = test_message(++i * 5);
    bytes += m.size();
    ASSERT_EQ(append(*store, "INBOX", m), i);
  }
  auto env = Env::open(path());
  ASSERT_TRUE(env);
  auto stats = (*env)->stats();
  ASSERT_TRUE(stats);
  EXPECT_GE(stats->map_bytes, 4u * 256 * 1024);
  auto box = std::move(*store->open("INBOX", true));
  EXPECT_EQ(fetch(*box, i), test_message(i * 5));

  // A map that may not grow past its limit fails cleanly with NoQuota.
  store.reset();
  box.reset();
  env->reset();
  TempDir other;
  EnvOptions capped;
  capped.initial_map_bytes = 256 * 1024;
  capped.max_map_bytes = 512 * 1024;
  auto tiny = open_store({"demo", other.path() + "/m"}, *bus_, capped);
  ASSERT_TRUE(tiny);
  Result<uint32_t> last = 0u;
  for (unsigned n = 1; n < 100 && last; ++n) {
    auto stream = (*tiny)->append("INBOX", {});
    ASSERT_TRUE((*stream)->write(test_message(n * 5)));
    last = (*stream)->commit();
  }
  ASSERT_FALSE(last);
  EXPECT_EQ(last.error().code, ErrorCode::NoQuota);
  EXPECT_TRUE((*tiny)->status("INBOX"));  // still usable
}

TEST_F(LmdbStoreTest, VerifyFindsDamagedBytes) {
  {
    auto store = open();
    for (unsigned i = 1; i <= 6; ++i) append(*store, "INBOX", test_message(i));
  }
  auto clean = verify_store(path());
  ASSERT_TRUE(clean);
  EXPECT_TRUE(clean->problems.empty());
  EXPECT_EQ(clean->messages, 6u);
  EXPECT_EQ(clean->schema_version, kSchemaVersion);
  EXPECT_GT(clean->message_bytes, 0u);

  poke(path(), kDbChunks, chunk_key(3, 0), "tampered");
  poke(path(), kDbMessages, message_key(1, 2), "\x01garbage");
  auto damaged = verify_store(path());
  ASSERT_TRUE(damaged);
  std::string all;
  for (auto& p : damaged->problems) all += p + "\n";
  EXPECT_NE(all.find("content 3"), std::string::npos) << all;
  EXPECT_NE(all.find("undecodable"), std::string::npos) << all;
  // Reading the damaged record is a Corrupt error, not a crash.
  auto store = open();
  auto box = store->open("INBOX", false);
  ASSERT_FALSE(box);
  EXPECT_EQ(box.error().code, ErrorCode::Corrupt);
}

TEST_F(LmdbStoreTest, CompactShrinksAndRefusesWhileInUse) {
  {
    auto store = open();
    for (unsigned i = 1; i <= 60; ++i) append(*store, "INBOX", test_message(i * 5));
    auto box = std::move(*store->open("INBOX", false));
    std::vector<uint32_t> all;
    for (uint32_t u = 1; u <= 55; ++u) all.push_back(u);
    ASSERT_TRUE(box->expunge(all));
  }
  auto before = verify_store(path());
  ASSERT_TRUE(before);
  EXPECT_GT(before->free_pages, 0u);

  // Another holder of the store (a server) keeps its shared lock: compaction must wait.
  int fd = ::open((path() + "/mailaccess.lock").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(flock(fd, LOCK_SH), 0);
  auto busy = compact_store(path());
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code, ErrorCode::InUse);
  ::close(fd);

  auto done = compact_store(path());
  ASSERT_TRUE(done) << done.error().detail;
  EXPECT_LT(done->bytes_after, done->bytes_before);
  auto after = verify_store(path());
  EXPECT_TRUE(after->problems.empty());
  EXPECT_EQ(after->messages, 5u);
  auto store = open();
  auto box = std::move(*store->open("INBOX", false));
  EXPECT_EQ(fetch(*box, 60), test_message(300));
  EXPECT_EQ(append(*store, "INBOX", test_message(1)), 61u);
}

}  // namespace
}  // namespace mailaccess::lmdb
