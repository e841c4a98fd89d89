// `mailaccess export --user U --to maildir:PATH|mbox:FILE [--mailbox NAME]`: writes a user's
// mail out of the store (whatever backend) as a Maildir++ tree or an mboxrd file, with flags,
// keywords and internal dates. Streams each message through a small buffer.

#include <fcntl.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "mailaccess/config.hpp"
#include "mailaccess/host.hpp"
#include "mailaccess/plugins.hpp"

namespace mailaccess::cli {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kCopyBytes = 64 * 1024;

[[noreturn]] void io_failure(const std::string& path) {
  exit_command(EX_IOERR, fmt::format("{}: {}", path, std::strerror(errno)));
}

/// Writes all of `data` to fd.
void write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) io_failure(path);
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

/// Streams a message out as lines with LF endings (files on disk use the local convention;
/// the store converts back to CRLF on import). `on_line` gets each line without its ending.
template <class F>
void for_each_line(spi::MessageReader& reader, F&& on_line) {
  std::vector<char> buf(kCopyBytes);
  std::string pending;
  uint64_t offset = 0;
  for (;;) {
    auto n = reader.read(offset, buf);
    if (!n) fail_with(n.error(), "reading a message");
    if (*n == 0) break;
    offset += *n;
    pending.append(buf.data(), *n);
    std::size_t start = 0, nl;
    while ((nl = pending.find('\n', start)) != std::string::npos) {
      std::size_t end = nl > start && pending[nl - 1] == '\r' ? nl - 1 : nl;
      on_line(std::string_view(pending).substr(start, end - start), true);
      start = nl + 1;
    }
    pending.erase(0, start);
  }
  if (!pending.empty()) on_line(std::string_view(pending), false);
}

struct Selection {
  std::vector<spi::MailboxEntry> boxes;
  uint64_t bytes = 0;
};

Selection select_mailboxes(spi::Store& store, const std::string& only) {
  Selection sel;
  auto list = store.list();
  if (!list) fail_with(list.error(), "listing mailboxes");
  for (auto& e : *list) {
    if (!only.empty() && e.name != only) continue;
    if (!e.no_select) {
      if (auto st = store.status(e.name)) sel.bytes += st->size;
    }
    sel.boxes.push_back(e);
  }
  if (!only.empty() && sel.boxes.empty()) {
    exit_command(EX_USAGE, fmt::format("no mailbox '{}'", only));
  }
  return sel;
}

// ---- Maildir ------------------------------------------------------------------------------------

std::string flag_letters(const spi::Flags& flags, const std::map<std::string, char>& letters) {
  // maildir(5): letters in ASCII order. Dovecot writes $Forwarded as P.
  std::string out;
  if (flags.system & spi::kFlagDraft) out += 'D';
  if (flags.system & spi::kFlagFlagged) out += 'F';
  for (auto& k : flags.keywords) {
    if (k == "$Forwarded") out += 'P';
  }
  if (flags.system & spi::kFlagAnswered) out += 'R';
  if (flags.system & spi::kFlagSeen) out += 'S';
  if (flags.system & spi::kFlagDeleted) out += 'T';
  for (auto& k : flags.keywords) {
    if (auto it = letters.find(k); it != letters.end()) out += it->second;
  }
  // Keyword letters were given out in keyword order, so `out` is in ASCII order already.
  return out;
}

void export_maildir(spi::Store& store, const fs::path& root, const std::string& only) {
  Selection sel = select_mailboxes(store, only);
  Progress progress(sel.bytes);
  auto started = std::chrono::steady_clock::now();
  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  std::string hostname(host);
  std::replace(hostname.begin(), hostname.end(), '/', '_');
  std::replace(hostname.begin(), hostname.end(), ':', '_');
  std::size_t skipped_keywords = 0;
  for (auto& entry : sel.boxes) {
    if (entry.name != "INBOX" && entry.name.find('.') != std::string::npos) {
      fmt::print(stderr, "mailaccess: skipping '{}': Maildir++ cannot name a folder with '.'\n",
                 entry.name);
      continue;
    }
    std::string folder_name = entry.name;
    std::replace(folder_name.begin(), folder_name.end(), '/', '.');
    fs::path dir = entry.name == "INBOX" ? root : root / ("." + folder_name);
    std::error_code ec;
    for (const char* sub : {"cur", "new", "tmp"}) {
      fs::create_directories(dir / sub, ec);
      if (ec) exit_command(EX_CANTCREAT, fmt::format("{}: {}", (dir / sub).string(), ec.message()));
    }
    if (entry.no_select) continue;
    auto box = store.open(entry.name, true);
    if (!box) fail_with(box.error(), fmt::format("opening '{}'", entry.name));
    // dovecot-keywords: up to 26 keywords get the letters a..z.
    std::map<std::string, char> letters;
    for (std::size_t i = 0; i < (*box)->count(); ++i) {
      for (auto& k : (*box)->message(i).flags.keywords) {
        if (k != "$Forwarded") letters.emplace(k, 0);
      }
    }
    std::string keyword_file;
    char next = 'a';
    for (auto it = letters.begin(); it != letters.end();) {
      if (next > 'z') {
        skipped_keywords += 1;
        it = letters.erase(it);
        continue;
      }
      keyword_file += fmt::format("{} {}\n", next - 'a', it->first);
      it->second = next++;
      ++it;
    }
    if (!keyword_file.empty()) {
      std::ofstream out(dir / "dovecot-keywords", std::ios::trunc);
      out << keyword_file;
    }
    for (std::size_t i = 0; i < (*box)->count(); ++i) {
      const auto& info = (*box)->message(i);
      auto reader = (*box)->open_message(info.uid);
      if (!reader) {
        if (reader.error().code == ErrorCode::Expunged) continue;
        fail_with(reader.error(), "reading a message");
      }
      std::string base = fmt::format("{}.M{}P{}.{}", info.internal_date, info.uid, ::getpid(),
                                     hostname);
      std::string tmp = (dir / "tmp" / base).string();
      int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd < 0) io_failure(tmp);
      std::string out;
      uint64_t written = 0;
      for_each_line(**reader, [&](std::string_view line, bool ended) {
        out.append(line);
        if (ended) out += '\n';
        if (out.size() >= kCopyBytes) {
          write_all(fd, out, tmp);
          written += out.size();
          out.clear();
        }
      });
      write_all(fd, out, tmp);
      written += out.size();
      // The file's mtime is the internal date (as Dovecot reads it back).
      timespec times[2] = {{info.internal_date, 0}, {info.internal_date, 0}};
      if (::futimens(fd, times) != 0 || ::fsync(fd) != 0) io_failure(tmp);
      ::close(fd);
      std::string final_name = fmt::format("{},S={},W={}:2,{}", base, written, info.size,
                                           flag_letters(info.flags, letters));
      if (::rename(tmp.c_str(), (dir / "cur" / final_name).c_str()) != 0) io_failure(tmp);
      progress.advance(info.size);
    }
  }
  progress.clear();
  if (skipped_keywords > 0) {
    fmt::print(stderr, "mailaccess: {} keywords beyond the 26 Maildir letters were not kept\n",
               skipped_keywords);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fmt::print("exported {} messages ({} bytes) from {} mailboxes in {:.1f}s\n",
             progress.messages(), progress.bytes(), sel.boxes.size(), secs);
}

// ---- mbox ---------------------------------------------------------------------------------------

void export_mbox(spi::Store& store, const fs::path& file, const std::string& mailbox) {
  Selection sel = select_mailboxes(store, mailbox);
  if (sel.boxes.front().no_select) exit_command(EX_USAGE, fmt::format("'{}' holds no messages", mailbox));
  auto box = store.open(mailbox, true);
  if (!box) fail_with(box.error(), fmt::format("opening '{}'", mailbox));
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) io_failure(file.string());
  Progress progress(sel.bytes);
  auto started = std::chrono::steady_clock::now();
  std::string out;
  auto flush = [&](bool force) {
    if (force || out.size() >= kCopyBytes) {
      write_all(fd, out, file.string());
      out.clear();
    }
  };
  for (std::size_t i = 0; i < (*box)->count(); ++i) {
    const auto& info = (*box)->message(i);
    auto reader = (*box)->open_message(info.uid);
    if (!reader) {
      if (reader.error().code == ErrorCode::Expunged) continue;
      fail_with(reader.error(), "reading a message");
    }
    std::time_t t = static_cast<std::time_t>(info.internal_date);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char date[64];
    std::strftime(date, sizeof date, "%a %b %e %H:%M:%S %Y", &tm);
    out += fmt::format("From MAILER-DAEMON {}\n", date);
    // Flags go into the headers mutt and Dovecot use; import reads and removes them.
    std::string flag_headers = (info.flags.system & spi::kFlagSeen) ? "Status: RO\n" : "Status: O\n";
    std::string x;
    if (info.flags.system & spi::kFlagAnswered) x += 'A';
    if (info.flags.system & spi::kFlagFlagged) x += 'F';
    if (info.flags.system & spi::kFlagDraft) x += 'T';
    if (info.flags.system & spi::kFlagDeleted) x += 'D';
    if (!x.empty()) flag_headers += "X-Status: " + x + "\n";
    if (!info.flags.keywords.empty()) {
      flag_headers += "X-Keywords:";
      for (auto& k : info.flags.keywords) flag_headers += " " + k;
      flag_headers += "\n";
    }
    bool in_header = true;
    bool ended = true;
    for_each_line(**reader, [&](std::string_view line, bool has_end) {
      if (in_header && line.empty()) {
        out += flag_headers;
        in_header = false;
      } else if (!in_header) {
        // mboxrd: any line that is ">*From " gets one more '>'.
        std::size_t q = line.find_first_not_of('>');
        if (q != std::string_view::npos && line.substr(q, 5) == "From ") out += '>';
      }
      out.append(line);
      if (has_end) out += '\n';
      ended = has_end;
      flush(false);
    });
    // A message with no header/body separator has nowhere to carry its flags without changing
    // its bytes: they are not written.
    if (!ended) out += '\n';
    out += '\n';
    flush(false);
    progress.advance(info.size);
  }
  flush(true);
  if (::fsync(fd) != 0) io_failure(file.string());
  ::close(fd);
  progress.clear();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fmt::print("exported {} messages ({} bytes) from {} in {:.1f}s\n", progress.messages(),
             progress.bytes(), mailbox, secs);
}

struct ExportOptions {
  std::string user;
  std::string to;
  std::string mailbox;
};

void run_export(const GlobalOptions& global, const ExportOptions& opts) {
  auto colon = opts.to.find(':');
  std::string kind = colon == std::string::npos ? "" : opts.to.substr(0, colon);
  std::string where = colon == std::string::npos ? "" : opts.to.substr(colon + 1);
  if ((kind != "maildir" && kind != "mbox") || where.empty()) {
    exit_command(EX_USAGE, "--to must be maildir:PATH or mbox:FILE");
  }
  Core core = open_core(global);
  auto store = open_user_store_or_exit(core, opts.user);
  if (kind == "maildir") {
    export_maildir(*store, where, opts.mailbox);
  } else {
    export_mbox(*store, where, opts.mailbox.empty() ? "INBOX" : opts.mailbox);
  }
}

}  // namespace

void add_export_command(CLI::App& app, GlobalOptions& global) {
  auto opts = std::make_shared<ExportOptions>();
  auto* cmd = app.add_subcommand("export", "Export a user's mail as a Maildir or an mbox file");
  cmd->add_option("-u,--user", opts->user, "User whose mail is exported")->required();
  cmd->add_option("--to", opts->to,
                  "maildir:PATH (all mailboxes as Maildir++ folders) or mbox:FILE (one mailbox; "
                  "the file must not exist)")
      ->required();
  cmd->add_option("-m,--mailbox", opts->mailbox,
                  "Only this mailbox (default: all for Maildir, INBOX for mbox)");
  cmd->callback([&global, opts] { run_export(global, *opts); });
}

}  // namespace mailaccess::cli
