// Storage figures for the LMDB backend, side by side with Maildir when that backend is built:
// durable append rate, open time of a large mailbox, metadata scan, range read, and the size of
// the database against the raw message bytes. Prints a table; never pass/fail.
//
// MAILACCESS_BENCH_MESSAGES sets the large mailbox's size (default 100000).

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "lmdb_store.hpp"
#include "mailaccess/change_bus.hpp"
#ifdef MAILACCESS_BENCH_MAILDIR
#include "maildir_backend.hpp"
#endif

namespace {

using namespace mailaccess;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string message(unsigned seq, std::size_t body_lines) {
  std::string m = fmt::format(
      "From: Sender {} <sender{}@example.org>\r\nTo: user@example.org\r\nSubject: bench message "
      "{}\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <{}@bench.example.org>\r\n"
      "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
      seq % 97, seq % 97, seq, seq);
  for (std::size_t i = 0; i < body_lines; ++i) {
    m += fmt::format("line {} of message {}: the quick brown fox jumps over the lazy dog\r\n", i,
                     seq);
  }
  return m;
}

uint64_t dir_bytes(const std::filesystem::path& p) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto& e : std::filesystem::recursive_directory_iterator(p, ec)) {
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      total += static_cast<uint64_t>(st.st_blocks) * 512;  // what the disk holds
    }
  }
  return total;
}

struct Figures {
  double append_per_s = 0;
  double open_large_s = 0;
  double reopen_large_s = 0;
  double scan_per_s = 0;
  double range_read_us = 0;
  uint64_t disk_bytes = 0;
  uint64_t raw_bytes = 0;
};

Figures run(spi::StorageBackend& backend, const std::string& root, unsigned large,
            const std::function<void(const std::string& path, const std::vector<std::string>&)>&
                populate) {
  Figures f;
  auto bus = make_change_bus();
  std::string path = root + "/store";
  {
    auto store = backend.open_store({"bench", path}, *bus);
    if (!store) {
      fmt::print(stderr, "{}: {}\n", backend.name(), store.error().detail);
      std::exit(1);
    }
    // Durable appends, one commit (fsync) each.
    constexpr unsigned kAppends = 300;
    auto t = Clock::now();
    for (unsigned i = 0; i < kAppends; ++i) {
      auto s = (*store)->append("INBOX", {});
      (void)(*s)->write(message(i, 20 + i % 60));
      if (!(*s)->commit()) std::exit(1);
    }
    f.append_per_s = kAppends / seconds_since(t);
    if (!(*store)->create("Large", spi::SpecialUse::None)) std::exit(1);
  }
  std::vector<std::string> bulk;
  for (unsigned i = 0; i < large; ++i) {
    bulk.push_back(message(i, 10 + i % 40));
    f.raw_bytes += bulk.back().size();
  }
  populate(path, bulk);
  bulk.clear();
  bulk.shrink_to_fit();

  auto store = backend.open_store({"bench", path}, *bus);
  auto t = Clock::now();
  auto box = (*store)->open("Large", true);
  f.open_large_s = seconds_since(t);
  if (!box || (*box)->count() == 0) {
    fmt::print(stderr, "{}: cannot open the large mailbox\n", backend.name());
    std::exit(1);
  }
  if ((*box)->count() != large) {
    fmt::print("{}: note: large mailbox shows {} messages, {} were put in\n", backend.name(),
               (*box)->count(), large);
  }
  box->reset();
  t = Clock::now();
  box = (*store)->open("Large", true);
  f.reopen_large_s = seconds_since(t);

  // Metadata scan: what FETCH FLAGS RFC822.SIZE INTERNALDATE over the whole mailbox reads.
  t = Clock::now();
  uint64_t sum = 0;
  for (std::size_t i = 0; i < (*box)->count(); ++i) {
    const auto& m = (*box)->message(i);
    sum += m.size + m.flags.system + static_cast<uint64_t>(m.internal_date);
  }
  auto st = (*store)->status("Large");
  f.scan_per_s = double((*box)->count()) / std::max(seconds_since(t), 1e-9);
  if (sum == 0 || !st) std::exit(1);

  // Range reads: BODY[]<100.200> of 2000 messages spread over the mailbox.
  constexpr unsigned kReads = 2000;
  char buf[200];
  t = Clock::now();
  for (unsigned i = 0; i < kReads; ++i) {
    uint32_t uid = (*box)->message((i * 7919u) % (*box)->count()).uid;
    auto reader = (*box)->open_message(uid);
    if (!reader || !(*reader)->read(100, buf)) std::exit(1);
  }
  f.range_read_us = seconds_since(t) * 1e6 / kReads;
  f.disk_bytes = dir_bytes(path);
  return f;
}

void print(const char* name, const Figures& f, unsigned large) {
  fmt::print("{:<8} {:>12.0f} {:>14.3f} {:>14.3f} {:>14.0f} {:>12.1f} {:>12.1f} {:>8.2f}\n", name,
             f.append_per_s, f.open_large_s, f.reopen_large_s, f.scan_per_s, f.range_read_us,
             f.disk_bytes / 1048576.0,
             double(f.disk_bytes) / double(std::max<uint64_t>(f.raw_bytes, 1)));
  std::fflush(stdout);
  (void)large;
}

}  // namespace

int main() {
  unsigned large = 100000;
  if (const char* n = std::getenv("MAILACCESS_BENCH_MESSAGES")) large = std::strtoul(n, nullptr, 10);
  std::string tmpl = (std::filesystem::temp_directory_path() / "mailaccess-bench-XXXXXX").string();
  std::string root = ::mkdtemp(tmpl.data());

  fmt::print("large mailbox: {} messages\n", large);
  fmt::print("{:<8} {:>12} {:>14} {:>14} {:>14} {:>12} {:>12} {:>8}\n", "backend", "append/s",
             "open large s", "reopen large s", "scan msgs/s", "range us", "disk MiB",
             "disk/raw");

  auto lmdb_backend = lmdb::make_backend({});
  std::filesystem::create_directories(root + "/lmdb");
  auto lf = run(*lmdb_backend, root + "/lmdb", large,
                [](const std::string& path, const std::vector<std::string>& messages) {
                  if (!lmdb::bulk_append(path, "Large", messages)) std::exit(1);
                });
  print("lmdb", lf, large);

#ifdef MAILACCESS_BENCH_MAILDIR
  // Maildir's large mailbox is filled as an MTA does: files dropped into new/.
  maildir::MaildirBackend maildir_backend;
  std::filesystem::create_directories(root + "/maildir");
  auto mf = run(maildir_backend, root + "/maildir", large,
                [](const std::string& path, const std::vector<std::string>& messages) {
                  std::string dir = path + "/.Large/new/";
                  for (std::size_t i = 0; i < messages.size(); ++i) {
                    std::ofstream out(dir + fmt::format("{}.M{}.bench", 1700000000 + i, i),
                                      std::ios::binary);
                    out << messages[i];
                  }
                });
  print("maildir", mf, large);
#else
  fmt::print("maildir  (backend not built)\n");
#endif
  std::error_code ec;
  std::filesystem::remove_all(root, ec);
  fmt::print("append: durable, one commit each; open large: first open (Maildir: picks up new/);"
             " range: open + BODY[]<100.200>;\ndisk/raw: space used over the raw message bytes"
             " (LMDB includes cached parses, free pages and the map's unused tail is sparse)\n");
  return 0;
}
