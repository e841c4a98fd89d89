// Maildir-specific behaviour: mail written by Postfix and Dovecot, damaged sidecars, inotify
// pickup, odd directories. The backend-independent cases are in tests/conformance/.

#include "maildir_backend.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "backend_harness.hpp"
#include "fs_util.hpp"
#include "mailaccess/change_bus.hpp"
#include "uidlist.hpp"

namespace mailaccess::maildir {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using testing::ManualLoop;
using testing::TempDir;

void write_file(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Delivers as Postfix's local(8) does: write into tmp/, rename into new/. LF line endings.
std::string postfix_deliver(const std::string& maildir, const std::string& name,
                            std::string_view data) {
  std::string tmp = maildir + "/tmp/" + name;
  write_file(tmp, data);
  std::string dst = maildir + "/new/" + name;
  fs::rename(tmp, dst);
  return dst;
}

std::string read_message(spi::Mailbox& box, uint32_t uid) {
  auto reader = box.open_message(uid);
  if (!reader) return "<" + reader.error().message + ">";
  std::string out((*reader)->size(), '\0');
  std::size_t got = 0;
  while (got < out.size()) {
    auto n = (*reader)->read(got, std::span<char>(out.data() + got, out.size() - got));
    if (!n || *n == 0) break;
    got += *n;
  }
  out.resize(got);
  return out;
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

class MaildirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.path() + "/Maildir";
    bus_ = make_change_bus();
    backend_ = std::make_unique<MaildirBackend>(
        [this](spi::LogLevel, std::string_view m) { log_.emplace_back(m); });
  }

  std::unique_ptr<spi::Store> open_store() {
    auto s = backend_->open_store(spi::StoreLocation{"alice", root_}, *bus_);
    EXPECT_TRUE(s) << (s ? "" : s.error().detail);
    return s ? std::move(*s) : nullptr;
  }

  uint32_t append(spi::Store& store, std::string_view box, std::string_view data) {
    auto stream = store.append(box, {});
    EXPECT_TRUE(stream);
    if (!stream) return 0;
    EXPECT_TRUE((*stream)->write(data));
    auto uid = (*stream)->commit();
    EXPECT_TRUE(uid);
    return uid ? *uid : 0;
  }

  TempDir dir_;
  std::string root_;
  std::unique_ptr<spi::ChangeBus> bus_;
  std::vector<std::string> log_;
  std::unique_ptr<MaildirBackend> backend_;
};

TEST_F(MaildirTest, ReadsMailPostfixDroppedIntoNew) {
  for (const char* sub : {"", "/cur", "/new", "/tmp"}) fs::create_directories(root_ + sub);
  std::string m1 = "Return-Path: <a@example.org>\nFrom: a@example.org\nSubject: one\n\nline\n";
  std::string m2 = "From: b@example.org\nSubject: two\n\nfirst\nsecond\n\n";
  std::string p1 = postfix_deliver(root_, "1700000000.V803I1a2bM000001.mx.example.org", m1);
  std::string p2 = postfix_deliver(root_, "1700000001.V803I1a2cM000002.mx.example.org", m2);
  // Arrival order is the files' mtime, not their names.
  struct timespec t1[2] = {{0, UTIME_OMIT}, {1700000100, 0}};
  struct timespec t2[2] = {{0, UTIME_OMIT}, {1700000050, 0}};
  ::utimensat(AT_FDCWD, p1.c_str(), t1, 0);
  ::utimensat(AT_FDCWD, p2.c_str(), t2, 0);

  auto store = open_store();
  auto box = store->open("INBOX", false);
  ASSERT_TRUE(box);
  ASSERT_EQ((*box)->count(), 2u);
  const auto& first = (*box)->message(0);
  const auto& second = (*box)->message(1);
  EXPECT_EQ(first.internal_date, 1700000050);
  EXPECT_EQ(second.internal_date, 1700000100);
  std::string want2 = "From: b@example.org\r\nSubject: two\r\n\r\nfirst\r\nsecond\r\n\r\n";
  std::string want1 =
      "Return-Path: <a@example.org>\r\nFrom: a@example.org\r\nSubject: one\r\n\r\nline\r\n";
  EXPECT_EQ(first.size, want2.size());
  EXPECT_EQ(second.size, want1.size());
  EXPECT_EQ(read_message(**box, first.uid), want2);
  EXPECT_EQ(read_message(**box, second.uid), want1);
  EXPECT_EQ(first.guid, "1700000001.V803I1a2cM000002.mx.example.org");
  // Picked up: new/ is empty, cur/ holds CRLF files whose names carry the wire size.
  EXPECT_TRUE(files_in(root_ + "/new").empty());
  auto cur = files_in(root_ + "/cur");
  ASSERT_EQ(cur.size(), 2u);
  EXPECT_EQ(cur[0], "1700000000.V803I1a2bM000001.mx.example.org,S=" +
                        std::to_string(want1.size()) + ",W=" + std::to_string(want1.size()) +
                        ":2,");
  EXPECT_EQ(slurp(root_ + "/cur/" + cur[0]), want1);
  // A byte range in the middle reads the CRLF bytes.
  auto reader = (*box)->open_message(second.uid);
  ASSERT_TRUE(reader);
  char buf[8];
  auto n = (*reader)->read(want1.size() - 6, std::span<char>(buf, sizeof buf));
  ASSERT_TRUE(n);
  EXPECT_EQ(std::string(buf, *n), "line\r\n");
}

TEST_F(MaildirTest, ReadsDovecotStyleFoldersAndKeywords) {
  for (const char* sub : {"", "/cur", "/new", "/tmp"}) fs::create_directories(root_ + sub);
  for (const char* folder : {".Sent", ".Work.Projects", ".Entw&APw-rfe"}) {
    for (const char* sub : {"/cur", "/new", "/tmp"}) fs::create_directories(root_ + "/" + folder + sub);
  }
  std::string work = root_ + "/.Work.Projects";
  write_file(work + "/dovecot-keywords", "0 $Forwarded\n1 Important\n");
  std::string body = "Subject: kw\r\n\r\nx\r\n";
  write_file(work + "/cur/1600000000.M1P2.host,S=" + std::to_string(body.size()) + ",W=" +
                 std::to_string(body.size()) + ":2,PSb",
             body);
  // Odd entries: an invalid modified UTF-7 name, an empty component, a symlink leading out.
  fs::create_directories(root_ + "/.bad&name/cur");
  fs::create_directories(root_ + "/.a..b/cur");
  TempDir outside;
  fs::create_directories(outside.path() + "/cur");
  fs::create_directory_symlink(outside.path(), root_ + "/.Escape");

  auto store = open_store();
  auto list = store->list();
  ASSERT_TRUE(list);
  std::set<std::string> names;
  for (const auto& e : *list) names.insert(e.name);
  EXPECT_EQ(names, (std::set<std::string>{"INBOX", "Sent", "Work", "Work/Projects", "Entwürfe"}));
  for (const auto& e : *list) {
    if (e.name == "Work") {
      EXPECT_TRUE(e.no_select);
      EXPECT_TRUE(e.has_children);
    }
  }
  EXPECT_FALSE(log_.empty());  // the odd directories were reported
  EXPECT_FALSE(store->open("Escape", true));

  auto box = store->open("Work/Projects", false);
  ASSERT_TRUE(box);
  ASSERT_EQ((*box)->count(), 1u);
  EXPECT_EQ((*box)->message(0).flags.system, spi::kFlagSeen);
  EXPECT_EQ((*box)->message(0).flags.keywords, std::vector<std::string>{"Important"});
  // A new keyword gets the next free letter in Dovecot's file; P (passed) is kept.
  spi::FlagUpdate add{spi::FlagOp::Add, {0, {"NewOne"}}, {}};
  ASSERT_TRUE((*box)->update_flags(std::vector<uint32_t>{(*box)->message(0).uid}, add));
  EXPECT_EQ(slurp(work + "/dovecot-keywords"), "0 $Forwarded\n1 Important\n2 NewOne\n");
  auto cur = files_in(work + "/cur");
  ASSERT_EQ(cur.size(), 1u);
  EXPECT_TRUE(cur[0].ends_with(":2,PSbc")) << cur[0];
}

TEST_F(MaildirTest, DamagedUidlistIsRebuiltWithoutLosingMail) {
  auto store = open_store();
  std::vector<uint32_t> uids;
  for (int i = 0; i < 4; ++i) uids.push_back(append(*store, "INBOX", "Subject: " + std::to_string(i) + "\r\n\r\n"));
  auto before = store->status("INBOX");
  ASSERT_TRUE(before);
  store.reset();

  // A damaged record line: the other messages keep their UIDs, the damaged one comes back.
  std::string list_path = root_ + "/" + std::string(kUidlistFile);
  std::string text = slurp(list_path);
  auto first_record = text.find("\n+" + std::to_string(uids[0]) + " ") + 1;
  ASSERT_GT(first_record, 0u);
  auto next_line = text.find('\n', first_record) + 1;
  text.replace(first_record, next_line - first_record, "+garbage\n");
  write_file(list_path, text);
  store = open_store();
  auto box = store->open("INBOX", false);
  ASSERT_TRUE(box);
  EXPECT_EQ((*box)->count(), 4u);
  EXPECT_EQ((*box)->status().uidvalidity, before->uidvalidity);
  EXPECT_TRUE((*box)->index_of(uids[1]));
  EXPECT_TRUE((*box)->index_of(uids[3]));
  EXPECT_FALSE((*box)->index_of(uids[0]));  // got a new UID
  EXPECT_GT((*box)->message(3).uid, uids[3]);
  box->reset();
  store.reset();

  // An unreadable header: new UIDVALIDITY, every message still there.
  write_file(list_path, "garbage header\n+1 1 0 0 x\n");
  store = open_store();
  box = store->open("INBOX", false);
  ASSERT_TRUE(box);
  EXPECT_EQ((*box)->count(), 4u);
  EXPECT_NE((*box)->status().uidvalidity, before->uidvalidity);
  std::set<std::string> subjects;
  for (std::size_t i = 0; i < (*box)->count(); ++i) {
    subjects.insert(read_message(**box, (*box)->message(i).uid));
  }
  EXPECT_EQ(subjects.size(), 4u);
  box->reset();
  store.reset();

  // No uidlist at all.
  fs::remove(list_path);
  store = open_store();
  auto status = store->status("INBOX");
  ASSERT_TRUE(status);
  EXPECT_EQ(status->messages, 4u);
}

TEST_F(MaildirTest, TornLastLineKeepsUidvalidity) {
  auto store = open_store();
  append(*store, "INBOX", "Subject: a\r\n\r\n");
  auto before = store->status("INBOX");
  store.reset();
  // A writer died in the middle of a line.
  std::ofstream(root_ + "/" + std::string(kUidlistFile), std::ios::app) << "+2 9 17000";
  store = open_store();
  append(*store, "INBOX", "Subject: b\r\n\r\n");
  auto after = store->status("INBOX");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->uidvalidity, before->uidvalidity);
  EXPECT_EQ(after->messages, 2u);
}

TEST_F(MaildirTest, DamagedCacheIsRebuilt) {
  auto store = open_store();
  uint32_t uid = append(*store, "INBOX",
                        "From: x@example.org\r\nSubject: cached\r\n\r\nbody\r\n");
  store.reset();  // the process-wide LMDB handle closes with its last store
  write_file(root_ + "/mailaccess-cache.mdb", std::string(8192, '\x5a'));
  store = open_store();
  auto box = store->open("INBOX", true);
  ASSERT_TRUE(box);
  auto s = (*box)->structure(uid);
  ASSERT_TRUE(s);
  EXPECT_EQ((*s)->envelope.subject, std::optional<std::string>("cached"));
  // And it is a cache again: the second lookup opens no message file.
  auto opens = message_file_opens().load();
  auto again = (*box)->structure(uid);
  ASSERT_TRUE(again);
  EXPECT_EQ(message_file_opens().load(), opens);
}

TEST_F(MaildirTest, MetadataNeedsNoMessageFile) {
  auto store = open_store();
  for (int i = 0; i < 20; ++i) append(*store, "INBOX", "Subject: m" + std::to_string(i) + "\r\n\r\nx\r\n");
  store.reset();
  store = open_store();
  auto opens = message_file_opens().load();
  auto box = store->open("INBOX", false);
  ASSERT_TRUE(box);
  uint64_t total = 0;
  for (std::size_t i = 0; i < (*box)->count(); ++i) {
    total += (*box)->message(i).size;
    auto s = (*box)->structure((*box)->message(i).uid);
    ASSERT_TRUE(s);
  }
  EXPECT_GT(total, 0u);
  EXPECT_EQ(message_file_opens().load(), opens);
  ASSERT_TRUE(store->status("INBOX"));
  EXPECT_EQ(message_file_opens().load(), opens);
}

TEST_F(MaildirTest, InotifyPicksUpMailFromTheMta) {
  auto store = open_store();
  ManualLoop loop;
  int calls = 0;
  auto token = bus_->subscribe("alice", "INBOX", loop, [&] { calls++; });
  auto box = store->open("INBOX", false);
  ASSERT_TRUE(box);
  ASSERT_EQ((*box)->count(), 0u);
  postfix_deliver(root_, "1700000000.V1I2M3.mx", "Subject: pushed\n\nhi\n");
  ASSERT_TRUE(loop.run_until([&] { return calls > 0; }, 10s)) << "no change-bus notification";
  auto changes = (*box)->refresh();
  ASSERT_TRUE(changes);
  EXPECT_EQ(changes->appended, 1u);
  EXPECT_EQ(read_message(**box, (*box)->message(0).uid), "Subject: pushed\r\n\r\nhi\r\n");
  bus_->unsubscribe(token);
}

TEST_F(MaildirTest, ChangesByOtherProgramsAreReported) {
  auto store = open_store();
  uint32_t a = append(*store, "INBOX", "Subject: a\r\n\r\n");
  uint32_t b = append(*store, "INBOX", "Subject: b\r\n\r\n");
  auto box = store->open("INBOX", false);
  ASSERT_TRUE(box);
  auto files = files_in(root_ + "/cur");
  ASSERT_EQ(files.size(), 2u);
  if (slurp(root_ + "/cur/" + files[0]) != "Subject: a\r\n\r\n") std::swap(files[0], files[1]);
  // A mail reader marks one message seen and deletes the other, straight on disk.
  fs::rename(root_ + "/cur/" + files[0], root_ + "/cur/" + files[0] + "S");
  fs::remove(root_ + "/cur/" + files[1]);
  auto changes = (*box)->refresh();
  ASSERT_TRUE(changes);
  EXPECT_EQ(changes->flags_changed, std::vector<uint32_t>{a});
  EXPECT_EQ(changes->expunged, std::vector<uint32_t>{b});
  EXPECT_EQ((*box)->message(0).flags.system, spi::kFlagSeen);
}

TEST_F(MaildirTest, MissingCurIsRecreatedAndSymlinksAreNotFollowed) {
  auto store = open_store();
  ASSERT_TRUE(store->create("Folder", spi::SpecialUse::None));
  fs::remove_all(root_ + "/.Folder/cur");
  auto box = store->open("Folder", false);
  ASSERT_TRUE(box);
  EXPECT_TRUE(fs::is_directory(root_ + "/.Folder/cur"));
  // A message file that is a symlink to a file outside the Maildir is never read.
  TempDir outside;
  write_file(outside.path() + "/secret", "Subject: secret\r\n\r\n");
  fs::create_symlink(outside.path() + "/secret", root_ + "/.Folder/cur/1.M1P1.h:2,");
  fs::create_symlink(outside.path() + "/secret", root_ + "/.Folder/new/2.M1P1.h");
  auto status = store->status("Folder");
  ASSERT_TRUE(status);
  EXPECT_EQ(status->messages, 0u);
}

TEST_F(MaildirTest, TooManyKeywordsIsALimit) {
  auto store = open_store();
  uint32_t uid = append(*store, "INBOX", "Subject: k\r\n\r\n");
  auto box = store->open("INBOX", false);
  ASSERT_TRUE(box);
  spi::FlagUpdate many{spi::FlagOp::Add, {}, {}};
  for (int i = 0; i < 26; ++i) many.flags.keywords.push_back("kw" + std::to_string(i));
  ASSERT_TRUE((*box)->update_flags(std::vector<uint32_t>{uid}, many));
  EXPECT_EQ((*box)->message(0).flags.keywords.size(), 26u);
  spi::FlagUpdate one_more{spi::FlagOp::Add, {0, {"straw"}}, {}};
  auto r = (*box)->update_flags(std::vector<uint32_t>{uid}, one_more);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::Limit);
}

// Backdates cur/ and new/ as if the mailbox had been idle for a while, so a scan may trust
// their mtimes.
void settle(const std::string& maildir) {
  struct timespec old[2] = {{0, UTIME_OMIT}, {1700000000, 123456789}};
  ::utimensat(AT_FDCWD, (maildir + "/cur").c_str(), old, 0);
  ::utimensat(AT_FDCWD, (maildir + "/new").c_str(), old, 0);
}

TEST_F(MaildirTest, OwnChangesNeedNoListingOfCur) {
  auto store = open_store();
  uint32_t a = append(*store, "INBOX", "Subject: a\r\n\r\n");
  uint32_t b = append(*store, "INBOX", "Subject: b\r\n\r\n");
  settle(root_);
  auto box = store->open("INBOX", false);
  ASSERT_TRUE(box);
  // From here on cur/ is only changed through the API (and the kernel must give the changes
  // timestamps that a later change cannot repeat; otherwise full listings are the fallback).
  auto listings = cur_listings().load();
  auto other = open_store();
  uint32_t c = append(*other, "INBOX", "Subject: c\r\n\r\n");
  auto changes = (*box)->refresh();
  ASSERT_TRUE(changes);
  EXPECT_EQ(changes->appended, 1u);
  ASSERT_TRUE((*box)->update_flags(std::vector<uint32_t>{a},
                                   {spi::FlagOp::Add, {spi::kFlagSeen, {}}, {}}));
  ASSERT_TRUE((*box)->expunge(std::vector<uint32_t>{b}));
  ASSERT_TRUE(other->create("Archive", spi::SpecialUse::None));
  ASSERT_TRUE((*box)->copy(std::vector<uint32_t>{c}, "INBOX"));
  auto view = open_store()->open("INBOX", true);
  ASSERT_TRUE(view);
  EXPECT_EQ((*view)->count(), 3u);
  EXPECT_EQ((*view)->message(0).flags.system, spi::kFlagSeen);
  bool fine_grained = cur_listings().load() == listings;
  if (!fine_grained) {
    std::printf("note: this kernel's directory timestamps are coarse: own changes were listed\n");
  }
  // Another program's change is still seen, whatever the timestamps. The view first takes in
  // its own copy of c: the renamed file may be either of the two "Subject: c" files (readdir
  // order), and a file the view has not seen yet would read as new mail, not as a flag change.
  ASSERT_TRUE((*box)->refresh());
  EXPECT_EQ((*box)->count(), 3u);
  auto files = files_in(root_ + "/cur");
  ASSERT_EQ(files.size(), 3u);
  std::string victim;
  for (const auto& f : files) {
    if (slurp(root_ + "/cur/" + f) == "Subject: c\r\n\r\n" && victim.empty()) victim = f;
  }
  ASSERT_FALSE(victim.empty());
  fs::rename(root_ + "/cur/" + victim, root_ + "/cur/" + victim + "F");
  changes = (*box)->refresh();
  ASSERT_TRUE(changes);
  EXPECT_EQ(changes->flags_changed.size(), 1u);
  EXPECT_GT(cur_listings().load(), listings);
}

// A process killed (SIGKILL) at each step of picking up bare-LF mail from new/ leaves every
// message there exactly once, in CRLF, for the next one to find.
TEST_F(MaildirTest, CrashDuringPickupLeavesEachMessageOnce) {
  const std::vector<std::string> bodies = {"Subject: one\n\nbody 1\n",
                                           "Subject: two\n\nbody 2\nmore\n",
                                           "Subject: three\r\n\r\nalready CRLF\r\n"};
  std::multiset<std::string> want;
  for (const auto& b : bodies) {
    std::string crlf;
    for (std::size_t i = 0; i < b.size(); ++i) {
      if (b[i] == '\n' && (i == 0 || b[i - 1] != '\r')) crlf.push_back('\r');
      crlf.push_back(b[i]);
    }
    want.insert(crlf);
  }
  for (const char* point : {"crlf-durable", "crlf-exchanged", "picked-up"}) {
    SCOPED_TRACE(point);
    std::string maildir = dir_.path() + "/" + point;
    for (const char* sub : {"", "/cur", "/new", "/tmp"}) fs::create_directories(maildir + sub);
    for (std::size_t i = 0; i < bodies.size(); ++i) {
      postfix_deliver(maildir, "170000000" + std::to_string(i) + ".M1P1.mx.example.org",
                      bodies[i]);
    }
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::setenv("MAILACCESS_MAILDIR_CRASH_AT", point, 1);
      MaildirBackend backend;
      auto bus = make_change_bus();
      auto store = backend.open_store(spi::StoreLocation{"crash", maildir}, *bus);
      if (store) (void)(*store)->open("INBOX", false);
      ::_exit(3);  // the crash point was never reached
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;

    auto store = backend_->open_store(spi::StoreLocation{"alice", maildir}, *bus_);
    ASSERT_TRUE(store);
    auto box = (*store)->open("INBOX", false);
    ASSERT_TRUE(box);
    std::multiset<std::string> got;
    for (std::size_t i = 0; i < (*box)->count(); ++i) {
      got.insert(read_message(**box, (*box)->message(i).uid));
    }
    EXPECT_EQ(got, want);
    EXPECT_TRUE(files_in(maildir + "/new").empty());
    EXPECT_EQ(files_in(maildir + "/cur").size(), bodies.size());
  }
}

// MOVE within a store renames the files: same inode and GUID, the cached parse is reused,
// and a process killed between the renames and the uidlist updates leaves each message in
// exactly one folder.
TEST_F(MaildirTest, MoveRenamesFilesAndSurvivesACrash) {
  {
    auto store = open_store();
    ASSERT_TRUE(store->create("Archive", spi::SpecialUse::None));
    uint32_t a = append(*store, "INBOX", "Subject: a\r\n\r\nbody a\r\n");
    append(*store, "INBOX", "Subject: b\r\n\r\nbody b\r\n");
    auto box = store->open("INBOX", false);
    ASSERT_TRUE(box);
    ASSERT_TRUE((*box)->update_flags(std::vector<uint32_t>{a},
                                     {spi::FlagOp::Add, {spi::kFlagFlagged, {"Work"}}, {}}));
    auto files = files_in(root_ + "/cur");
    ASSERT_EQ(files.size(), 2u);
    std::string guid = (*box)->message(0).guid;
    struct stat before {};
    for (const auto& f : files) {
      if (f.starts_with(guid)) ASSERT_EQ(::stat((root_ + "/cur/" + f).c_str(), &before), 0);
    }
    auto moved = (*box)->move(std::vector<uint32_t>{a}, "Archive");
    ASSERT_TRUE(moved);
    ASSERT_EQ(moved->dest.size(), 1u);
    EXPECT_EQ((*box)->count(), 1u);
    auto archive = store->open("Archive", false);
    ASSERT_TRUE(archive);
    ASSERT_EQ((*archive)->count(), 1u);
    const auto& m = (*archive)->message(0);
    EXPECT_EQ(m.uid, moved->dest[0]);
    EXPECT_EQ(m.guid, guid);
    EXPECT_EQ(m.flags.system, spi::kFlagFlagged);
    EXPECT_EQ(m.flags.keywords, std::vector<std::string>{"Work"});
    auto archived = files_in(root_ + "/.Archive/cur");
    ASSERT_EQ(archived.size(), 1u);
    struct stat after {};
    ASSERT_EQ(::stat((root_ + "/.Archive/cur/" + archived[0]).c_str(), &after), 0);
    EXPECT_EQ(after.st_ino, before.st_ino);
    auto opens = message_file_opens().load();
    auto s = (*archive)->structure(m.uid);
    ASSERT_TRUE(s);
    EXPECT_EQ(message_file_opens().load(), opens);  // the parse cached at APPEND time
    EXPECT_EQ(read_message(**archive, m.uid), "Subject: a\r\n\r\nbody a\r\n");
  }

  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::setenv("MAILACCESS_MAILDIR_CRASH_AT", "moved", 1);
    MaildirBackend backend;
    auto bus = make_change_bus();
    auto store = backend.open_store(spi::StoreLocation{"alice", root_}, *bus);
    if (store) {
      auto box = (*store)->open("INBOX", false);
      if (box && (*box)->count() == 1) {
        (void)(*box)->move(std::vector<uint32_t>{(*box)->message(0).uid}, "Archive");
      }
    }
    ::_exit(3);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
  auto store = open_store();
  auto inbox = store->open("INBOX", false);
  auto archive = store->open("Archive", false);
  ASSERT_TRUE(inbox && archive);
  EXPECT_EQ((*inbox)->count(), 0u);
  ASSERT_EQ((*archive)->count(), 2u);
  std::multiset<std::string> got;
  for (std::size_t i = 0; i < 2; ++i) {
    got.insert(read_message(**archive, (*archive)->message(i).uid));
  }
  EXPECT_EQ(got, (std::multiset<std::string>{"Subject: a\r\n\r\nbody a\r\n",
                                             "Subject: b\r\n\r\nbody b\r\n"}));
}

TEST_F(MaildirTest, BatchKilledBeforeItsUidlistRecordIsAdoptedWhole) {
  auto store = open_store();
  uint32_t before = append(*store, "INBOX", "Subject: before\r\n\r\nbody\r\n");
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::setenv("MAILACCESS_MAILDIR_CRASH_AT", "renamed", 1);
    MaildirBackend backend;
    auto bus = make_change_bus();
    auto child = backend.open_store(spi::StoreLocation{"alice", root_}, *bus);
    if (child) {
      auto batch = (*child)->append_batch("INBOX");
      for (int i = 0; batch && i < 3; ++i) {
        spi::AppendOptions options;
        options.flags.system = spi::kFlagSeen;
        options.internal_date = 1700000000 + i;
        auto stream = (*batch)->add(options);
        if (!stream) break;
        (void)(*stream)->write("Subject: batch " + std::to_string(i) + "\n\nline\n");
        (void)(*stream)->commit();
      }
      if (batch) (void)(*batch)->commit();
    }
    ::_exit(3);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
  // The files reached cur/ (durable before they were renamed) but no uidlist record: the next
  // scan adopts each of them once, whole, with its flags, after the message there before.
  auto reopened = open_store();
  auto box = reopened->open("INBOX", false);
  ASSERT_TRUE(box);
  ASSERT_EQ((*box)->count(), 4u);
  EXPECT_EQ((*box)->message(0).uid, before);
  std::multiset<std::string> got;
  for (std::size_t i = 1; i < 4; ++i) {
    const auto& m = (*box)->message(i);
    EXPECT_GT(m.uid, before);
    EXPECT_EQ(m.flags.system, spi::kFlagSeen);
    got.insert(read_message(**box, m.uid));
  }
  EXPECT_EQ(got, (std::multiset<std::string>{"Subject: batch 0\r\n\r\nline\r\n",
                                             "Subject: batch 1\r\n\r\nline\r\n",
                                             "Subject: batch 2\r\n\r\nline\r\n"}));
  // And the next append goes on above them.
  EXPECT_GT(append(*reopened, "INBOX", "Subject: after\r\n\r\n"), (*box)->message(3).uid);
}

TEST_F(MaildirTest, UidlistCompactionKeepsState) {
  // 1200 changes: durability is not what this test is about.
  set_fsync_enabled(false);
  struct Restore {
    ~Restore() { set_fsync_enabled(true); }
  } restore;
  auto store = open_store();
  uint32_t uid = append(*store, "INBOX", "Subject: c\r\n\r\n");
  auto box = store->open("INBOX", false);
  ASSERT_TRUE(box);
  spi::FlagUpdate toggle_on{spi::FlagOp::Add, {spi::kFlagSeen, {}}, {}};
  spi::FlagUpdate toggle_off{spi::FlagOp::Remove, {spi::kFlagSeen, {}}, {}};
  for (int i = 0; i < 1200; ++i) {
    ASSERT_TRUE((*box)->update_flags(std::vector<uint32_t>{uid}, i % 2 ? toggle_off : toggle_on));
  }
  auto modseq = (*box)->message(0).modseq;
  EXPECT_LT(fs::file_size(root_ + "/" + std::string(kUidlistFile)), 1200u * 40);
  auto other = open_store();
  auto view = other->open("INBOX", true);
  ASSERT_TRUE(view);
  EXPECT_EQ((*view)->message(0).modseq, modseq);
  EXPECT_EQ((*view)->status().highest_modseq, modseq);
  EXPECT_EQ((*view)->message(0).flags.system, 0u);
}

}  // namespace
}  // namespace mailaccess::maildir
