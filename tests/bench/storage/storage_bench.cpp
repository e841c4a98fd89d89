// Maildir storage figures for a large mailbox: append rate (and its CPU and bytes written per
// message as the mailbox grows), open time with a warm cache, a metadata scan (flags, sizes,
// ENVELOPE from the cache) that must open no message file, range-read throughput, appends
// into a mailbox a session has open, the first pickup of LF mail from new/, and peak RSS.
//
//   meson test -C BUILD --benchmark --suite storage -v
//
// Environment: MAILACCESS_BENCH_MESSAGES (default 100000), MAILACCESS_BENCH_SECONDS (time
// budget of the fill, default 900), MAILACCESS_BENCH_DIR (where to build the Maildir, default
// the temp dir), MAILACCESS_CORPUS (messages to use; default ../shared/corpus or the sample).
// Exit status 1 if the metadata scan opened a message file or a check failed.

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "fs_util.hpp"
#include "mailaccess/change_bus.hpp"
#include "maildir_backend.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using mailaccess::maildir::MaildirBackend;
using mailaccess::maildir::message_file_opens;
namespace spi = mailaccess::spi;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// User + system CPU time of this process, in seconds: unlike wall time it does not count
// waiting for a disk that other processes keep busy.
double cpu_seconds() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

long env_long(const char* name, long fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtol(v, nullptr, 10) : fallback;
}

std::vector<std::string> load_corpus(std::size_t max) {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("MAILACCESS_CORPUS")) dirs.push_back(env);
  dirs.push_back(MAILACCESS_SOURCE_ROOT "/../shared/corpus");
  dirs.push_back(MAILACCESS_SOURCE_ROOT "/tests/data/corpus");
  std::vector<std::string> paths;
  for (const auto& d : dirs) {
    std::error_code ec;
    if (!fs::is_directory(d, ec)) continue;
    for (auto it = fs::recursive_directory_iterator(d, ec);
         it != fs::recursive_directory_iterator() && !ec; it.increment(ec)) {
      if (it->is_regular_file() && it->path().extension() == ".eml") paths.push_back(it->path());
    }
    if (!paths.empty()) {
      std::printf("corpus: %s\n", d.c_str());
      break;
    }
  }
  std::sort(paths.begin(), paths.end());
  std::vector<std::string> out;
  for (const auto& p : paths) {
    if (out.size() >= max) break;
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    if (ss.str().size() <= 256 * 1024) out.push_back(ss.str());
  }
  if (out.empty()) out.push_back("From: a@example.org\nSubject: bench\n\nbody\n");
  return out;
}

bool append_one(spi::Store& store, const std::string& corpus_msg, long i) {
  // Varied headers make every message distinct (Message-ID, Subject, Date).
  std::string msg = "Message-ID: <bench-" + std::to_string(i) + "@bench.example>\n" +
                    "X-Bench-Seq: " + std::to_string(i) + "\n" + corpus_msg;
  spi::AppendOptions options;
  options.internal_date = 1600000000 + i;
  if (i % 3 == 0) options.flags.system = spi::kFlagSeen;
  auto stream = store.append("INBOX", options);
  if (!stream) return false;
  if (!(*stream)->write(msg)) return false;
  return static_cast<bool>((*stream)->commit());
}

// Bytes this process caused to be written to storage (/proc/self/io write_bytes); 0 if unknown.
double written_bytes() {
  std::ifstream in("/proc/self/io");
  std::string key;
  double value = 0;
  while (in >> key >> value) {
    if (key == "write_bytes:") return value;
  }
  return 0;
}

}  // namespace

int main() {
  const long target = env_long("MAILACCESS_BENCH_MESSAGES", 100000);
  const double budget = static_cast<double>(env_long("MAILACCESS_BENCH_SECONDS", 900));
  const long durable_sample = std::min<long>(target, 1000);
  std::string base = std::getenv("MAILACCESS_BENCH_DIR") ? std::getenv("MAILACCESS_BENCH_DIR")
                                                         : fs::temp_directory_path().string();
  std::string tmpl = base + "/mailaccess-storage-bench-XXXXXX";
  if (!::mkdtemp(tmpl.data())) {
    std::perror("mkdtemp");
    return 2;
  }
  std::string root = tmpl + "/Maildir";
  int failures = 0;
  auto corpus = load_corpus(2000);
  auto bus = mailaccess::make_change_bus();
  MaildirBackend backend;
  auto store = backend.open_store(spi::StoreLocation{"bench", root}, *bus);
  if (!store) {
    std::fprintf(stderr, "open_store: %s\n", store.error().detail.c_str());
    return 2;
  }
  std::printf("maildir at %s, %zu corpus messages, target %ld messages\n", root.c_str(),
              corpus.size(), target);

  // 1. Append rate, durable (fsync on, as in production) for a sample.
  auto t = Clock::now();
  long n = 0;
  for (; n < durable_sample; ++n) {
    if (!append_one(**store, corpus[n % corpus.size()], n)) break;
  }
  double durable_rate = n / seconds_since(t);
  std::printf("append (fsync on):        %8.0f msgs/s  (%ld messages)\n", durable_rate, n);

  // The rest of the fill skips fsync so 100,000 messages fit in the time budget; the figure is
  // the backend's own cost without waiting for the disk.
  mailaccess::maildir::set_fsync_enabled(false);
  t = Clock::now();
  long bulk_start = n;
  // The rate per 10,000 messages shows whether an append costs more as the mailbox grows.
  constexpr long kWindow = 10000;
  auto window_start = Clock::now();
  double window_cpu = cpu_seconds();
  double window_written = written_bytes();
  long window_from = n;
  std::string windows;
  for (; n < target && seconds_since(t) < budget; ++n) {
    if (!append_one(**store, corpus[n % corpus.size()], n)) {
      std::fprintf(stderr, "append %ld failed\n", n);
      failures++;
      break;
    }
    if ((n + 1) % kWindow == 0) {
      char line[160];
      double cpu = cpu_seconds();
      double written = written_bytes();
      double count = static_cast<double>(n + 1 - window_from);
      std::snprintf(line, sizeof line,
                    "  up to %6ld messages:   %8.0f msgs/s, %6.0f us CPU, %6.1f KB written each\n",
                    n + 1, count / seconds_since(window_start), (cpu - window_cpu) * 1e6 / count,
                    (written - window_written) / 1024 / count);
      windows += line;
      window_cpu = cpu;
      window_written = written;
      window_start = Clock::now();
      window_from = n + 1;
    }
  }
  double bulk_rate = (n - bulk_start) / seconds_since(t);
  mailaccess::maildir::set_fsync_enabled(true);
  std::printf("append (fsync off):       %8.0f msgs/s  (%ld messages)\n", bulk_rate, n - bulk_start);
  std::fputs(windows.c_str(), stdout);
  if (n < target) std::printf("note: time budget reached after %ld messages\n", n);
  store->reset();

  // 2. Open time. The first open after the fill lists cur/ (its mtime is new); once the
  // directory has settled, opens trust the recorded scan and read only the uidlist.
  auto listings_before = mailaccess::maildir::cur_listings().load();
  auto fresh_store = backend.open_store(spi::StoreLocation{"bench", root}, *bus);
  std::vector<double> opens;
  std::unique_ptr<spi::Mailbox> box;
  for (int k = 0; k < 5; ++k) {
    box.reset();
    t = Clock::now();
    auto b = (*fresh_store)->open("INBOX", true);
    opens.push_back(seconds_since(t) * 1000);
    if (!b) {
      std::fprintf(stderr, "open failed: %s\n", b.error().detail.c_str());
      return 1;
    }
    box = std::move(*b);
  }
  // A new Store each time, as a new session or process gets: it reads the whole uidlist.
  std::vector<double> cold_store_opens;
  for (int k = 0; k < 3; ++k) {
    t = Clock::now();
    auto s = backend.open_store(spi::StoreLocation{"bench", root}, *bus);
    auto b = s ? (*s)->open("INBOX", true) : tl::unexpected(s.error());
    cold_store_opens.push_back(seconds_since(t) * 1000);
    if (!b) return 1;
  }
  std::printf("open, first:              %8.1f ms  (%zu messages; cur/ listed %llu times)\n",
              opens[0], box->count(),
              static_cast<unsigned long long>(mailaccess::maildir::cur_listings().load() -
                                              listings_before));
  std::printf("open, new store:          %8.1f ms  (best of %zu)\n",
              *std::min_element(cold_store_opens.begin(), cold_store_opens.end()),
              cold_store_opens.size());
  std::printf("open, same store:         %8.1f ms  (best of %zu later opens)\n",
              *std::min_element(opens.begin() + 1, opens.end()), opens.size() - 1);
  if (box->count() != static_cast<std::size_t>(n)) {
    std::fprintf(stderr, "expected %ld messages, found %zu\n", n, box->count());
    failures++;
  }

  // 3. Metadata scan: flags, sizes and ENVELOPE for every message, from the cache alone.
  auto opens_before = message_file_opens().load();
  t = Clock::now();
  uint64_t total_size = 0, seen = 0, subjects = 0;
  for (std::size_t i = 0; i < box->count(); ++i) {
    const auto& m = box->message(i);
    total_size += m.size;
    if (m.flags.system & spi::kFlagSeen) seen++;
    auto s = box->structure(m.uid);
    if (s && (*s)->envelope.subject) subjects++;
  }
  double scan = seconds_since(t);
  auto opened = message_file_opens().load() - opens_before;
  std::printf("metadata scan:            %8.0f msgs/s  (%.2f s; %llu bytes, %llu seen, %llu subjects)\n",
              box->count() / scan, scan, static_cast<unsigned long long>(total_size),
              static_cast<unsigned long long>(seen), static_cast<unsigned long long>(subjects));
  std::printf("message files opened:     %8llu  (must be 0)\n",
              static_cast<unsigned long long>(opened));
  if (opened != 0) failures++;

  // 4. Range reads: 4 KiB at random offsets of random messages, bounded in count.
  std::mt19937_64 rng(7);
  std::vector<char> buf(4096);
  const std::size_t reads = std::min<std::size_t>(box->count(), 20000);
  uint64_t bytes = 0;
  t = Clock::now();
  for (std::size_t k = 0; k < reads; ++k) {
    const auto& m = box->message(rng() % box->count());
    auto r = box->open_message(m.uid);
    if (!r) {
      failures++;
      continue;
    }
    uint64_t off = m.size > buf.size() ? rng() % (m.size - buf.size()) : 0;
    auto got = (*r)->read(off, std::span<char>(buf.data(), buf.size()));
    if (got) bytes += *got;
  }
  double rt = seconds_since(t);
  std::printf("range reads (4 KiB):      %8.0f reads/s, %.1f MB/s\n", reads / rt,
              bytes / rt / 1e6);

  // 5. Appends while a session has the mailbox open and catches up after each one, as an IMAP
  // client appending to its selected mailbox or an IDLE session during deliveries does.
  {
    auto s = backend.open_store(spi::StoreLocation{"bench", root}, *bus);
    auto view = s ? (*s)->open("INBOX", false) : tl::unexpected(s.error());
    if (!view) return 1;
    mailaccess::maildir::set_fsync_enabled(false);
    const long extra = std::min<long>(target, 2000);
    long k = 0;
    double cpu = cpu_seconds();
    t = Clock::now();
    for (; k < extra && seconds_since(t) < 30; ++k) {
      if (!append_one(**s, corpus[(n + k) % corpus.size()], n + k)) break;
      auto changes = (*view)->refresh();
      if (!changes || changes->appended != 1) {
        std::fprintf(stderr, "the open view did not see append %ld\n", n + k);
        failures++;
        break;
      }
    }
    double rate = k / seconds_since(t);
    mailaccess::maildir::set_fsync_enabled(true);
    std::printf(
        "append + refresh of an open view (fsync off): %6.0f msgs/s, %6.0f us CPU each "
        "(%ld messages into %ld)\n",
        rate, (cpu_seconds() - cpu) * 1e6 / std::max<long>(k, 1), k, n);
  }

  // 6. First pickup of bare-LF mail an MTA dropped into new/ (as Postfix does): each message is
  // converted to CRLF, durably (fsync on), before the first open returns.
  {
    std::string pickup = tmpl + "/Pickup";
    for (const char* sub : {"", "/cur", "/new", "/tmp"}) fs::create_directories(pickup + sub);
    const long count = std::min<long>(target, 500);
    for (long k = 0; k < count; ++k) {
      std::string name = std::to_string(1700000000 + k) + ".M" + std::to_string(k) + "P1.mx";
      std::string msg = "Message-ID: <pickup-" + std::to_string(k) + "@bench.example>\n";
      for (char c : corpus[k % corpus.size()]) {
        if (c != '\r') msg.push_back(c);
      }
      std::ofstream(pickup + "/tmp/" + name, std::ios::binary) << msg;
      fs::rename(pickup + "/tmp/" + name, pickup + "/new/" + name);
    }
    t = Clock::now();
    auto s = backend.open_store(spi::StoreLocation{"pickup", pickup}, *bus);
    auto view = s ? (*s)->open("INBOX", true) : tl::unexpected(s.error());
    double ms = seconds_since(t) * 1000;
    if (!view || (*view)->count() != static_cast<std::size_t>(count)) {
      std::fprintf(stderr, "pickup: expected %ld messages\n", count);
      failures++;
    }
    std::printf("first open, %ld LF messages in new/: %6.0f ms  (fsync on)\n", count, ms);
  }

  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  std::printf("peak RSS:                 %8.1f MB\n", ru.ru_maxrss / 1024.0);

  box.reset();
  fresh_store->reset();
  if (!std::getenv("MAILACCESS_BENCH_KEEP")) {
    std::error_code ec;
    fs::remove_all(tmpl, ec);
  }
  if (failures) std::printf("FAILED checks: %d\n", failures);
  return failures ? 1 : 0;
}
