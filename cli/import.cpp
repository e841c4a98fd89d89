// `mailaccess import --user U --from maildir:PATH|mbox:FILE [--to-mailbox NAME]`: copies mail
// from a Maildir++ tree or an mbox file into the user's store (whatever backend is configured),
// keeping flags, keywords and internal dates. Streams: one message in memory at most.

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
// Messages go to the store in batches (Store::append_batch): one sync per batch instead of
// several per message. A batch ends after this many messages or bytes, which bounds what an
// interrupted import has to redo and the memory a backend may hold for the batch.
constexpr std::size_t kBatchMessages = 500;
constexpr uint64_t kBatchBytes = 64 << 20;

std::string join_mailbox(const std::string& prefix, const std::string& name) {
  if (prefix.empty()) return name;
  if (name == "INBOX") return prefix;
  return prefix + "/" + name;
}

spi::SpecialUse special_use_for(const std::string& name) {
  static const std::map<std::string, spi::SpecialUse> kKnown = {
      {"Sent", spi::SpecialUse::Sent},   {"Drafts", spi::SpecialUse::Drafts},
      {"Trash", spi::SpecialUse::Trash}, {"Junk", spi::SpecialUse::Junk},
      {"Archive", spi::SpecialUse::Archive}};
  auto it = kKnown.find(name);
  return it == kKnown.end() ? spi::SpecialUse::None : it->second;
}

void ensure_mailbox(spi::Store& store, const std::string& name) {
  if (name == "INBOX") return;
  auto created = store.create(name, special_use_for(name));
  if (!created && created.error().code != ErrorCode::Exists) {
    fail_with(created.error(), fmt::format("creating mailbox '{}'", name));
  }
}

// Appends to one mailbox through an AppendBatch, committed when it is full and at the end.
// Any failure exits the command; the messages of the batch under way are then discarded (the
// batch removes them), those of earlier batches stay imported.
class BatchWriter {
 public:
  BatchWriter(spi::Store& store, std::string mailbox, uint64_t& imported)
      : mailbox_(std::move(mailbox)), imported_(imported) {
    auto batch = store.append_batch(mailbox_);
    if (!batch) fail_with(batch.error(), fmt::format("appending to '{}'", mailbox_));
    batch_ = std::move(*batch);
  }

  std::unique_ptr<spi::AppendStream> start(const spi::AppendOptions& options) {
    auto stream = batch_->add(options);
    if (!stream) fail_with(stream.error(), fmt::format("appending to '{}'", mailbox_));
    return std::move(*stream);
  }

  // Hands a fully written message to the batch; `what` names it in an error.
  void done(spi::AppendStream& stream, uint64_t bytes, std::string_view what) {
    if (auto staged = stream.commit(); !staged) fail_at(staged.error(), what);
    ++pending_;
    pending_bytes_ += bytes;
    if (pending_ >= kBatchMessages || pending_bytes_ >= kBatchBytes) commit(what);
  }

  void finish(std::string_view what) { commit(what); }

 private:
  void commit(std::string_view what) {
    if (pending_ == 0) return;
    auto uids = batch_->commit();
    if (!uids) fail_at(uids.error(), what);
    imported_ += uids->size();
    pending_ = 0;
    pending_bytes_ = 0;
  }

  [[noreturn]] void fail_at(const Error& error, std::string_view what) {
    fail_with(error, fmt::format("saving {} ({} messages were imported before; the {} after "
                                 "them were not)",
                                 what, imported_, pending_));
  }

  std::string mailbox_;
  uint64_t& imported_;
  std::unique_ptr<spi::AppendBatch> batch_;
  std::size_t pending_ = 0;
  uint64_t pending_bytes_ = 0;
};

// ---- Maildir ------------------------------------------------------------------------------------

struct MaildirFolder {
  std::string mailbox;  // '/' separated
  fs::path dir;
};

struct MaildirMessage {
  fs::path file;
  int64_t mtime = 0;
  uint64_t size = 0;
};

/// Maildir++: the root is INBOX, ".A.B" is A/B.
std::vector<MaildirFolder> maildir_folders(const fs::path& root) {
  std::vector<MaildirFolder> out;
  std::error_code ec;
  auto is_maildir = [&](const fs::path& p) {
    return fs::is_directory(p / "cur", ec) || fs::is_directory(p / "new", ec);
  };
  if (is_maildir(root)) out.push_back({"INBOX", root});
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    std::string name = entry.path().filename().string();
    if (name.size() < 2 || name[0] != '.' || name == ".." || !is_maildir(entry.path())) continue;
    std::string mailbox = name.substr(1);
    std::replace(mailbox.begin(), mailbox.end(), '.', '/');
    out.push_back({mailbox, entry.path()});
  }
  std::sort(out.begin(), out.end(),
            [](const MaildirFolder& a, const MaildirFolder& b) { return a.mailbox < b.mailbox; });
  return out;
}

std::vector<MaildirMessage> maildir_messages(const fs::path& dir) {
  std::vector<MaildirMessage> out;
  for (const char* sub : {"new", "cur"}) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir / sub, ec)) {
      struct stat st {};
      if (::stat(entry.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      if (entry.path().filename().string().front() == '.') continue;
      out.push_back({entry.path(), static_cast<int64_t>(st.st_mtime),
                     static_cast<uint64_t>(st.st_size)});
    }
  }
  // Maildir names start with the delivery time: this is arrival order.
  std::sort(out.begin(), out.end(), [](const MaildirMessage& a, const MaildirMessage& b) {
    return a.mtime != b.mtime ? a.mtime < b.mtime
                              : a.file.filename().string() < b.file.filename().string();
  });
  return out;
}

/// dovecot-keywords: "<index> <keyword>" per line; index 0 is flag letter 'a'.
std::map<char, std::string> maildir_keywords(const fs::path& dir) {
  std::map<char, std::string> out;
  std::ifstream in(dir / "dovecot-keywords");
  std::string line;
  while (std::getline(in, line)) {
    auto space = line.find(' ');
    if (space == std::string::npos) continue;
    int index = std::atoi(line.substr(0, space).c_str());
    if (index >= 0 && index < 26) out[static_cast<char>('a' + index)] = line.substr(space + 1);
  }
  return out;
}

/// The ":2,<letters>" info of a Maildir file name (maildir(5); Dovecot's P is $Forwarded).
spi::Flags maildir_flags(const std::string& filename, const std::map<char, std::string>& keywords) {
  spi::Flags flags;
  auto info = filename.rfind(":2,");
  if (info == std::string::npos) return flags;
  for (char c : filename.substr(info + 3)) {
    switch (c) {
      case 'D': flags.system |= spi::kFlagDraft; break;
      case 'F': flags.system |= spi::kFlagFlagged; break;
      case 'R': flags.system |= spi::kFlagAnswered; break;
      case 'S': flags.system |= spi::kFlagSeen; break;
      case 'T': flags.system |= spi::kFlagDeleted; break;
      case 'P': flags.keywords.push_back("$Forwarded"); break;
      default:
        if (auto it = keywords.find(c); it != keywords.end()) flags.keywords.push_back(it->second);
    }
  }
  std::sort(flags.keywords.begin(), flags.keywords.end());
  flags.keywords.erase(std::unique(flags.keywords.begin(), flags.keywords.end()),
                       flags.keywords.end());
  return flags;
}

void import_maildir(spi::Store& store, const fs::path& root, const std::string& prefix) {
  if (!fs::is_directory(root)) exit_command(EX_NOINPUT, fmt::format("{}: not a directory", root.string()));
  auto folders = maildir_folders(root);
  if (folders.empty()) exit_command(EX_DATAERR, fmt::format("{}: no Maildir (cur/, new/) found", root.string()));
  std::vector<std::pair<MaildirFolder, std::vector<MaildirMessage>>> plan;
  uint64_t total = 0;
  for (auto& f : folders) {
    auto messages = maildir_messages(f.dir);
    for (auto& m : messages) total += m.size;
    plan.emplace_back(f, std::move(messages));
  }
  Progress progress(total);
  auto started = std::chrono::steady_clock::now();
  std::vector<char> buf(kCopyBytes);
  uint64_t imported = 0;
  for (auto& [folder, messages] : plan) {
    std::string mailbox = join_mailbox(prefix, folder.mailbox);
    ensure_mailbox(store, mailbox);
    auto keywords = maildir_keywords(folder.dir);
    BatchWriter writer(store, mailbox, imported);
    for (auto& m : messages) {
      spi::AppendOptions options;
      options.flags = maildir_flags(m.file.filename().string(), keywords);
      options.internal_date = m.mtime;
      options.expected_size = m.size;
      std::unique_ptr<std::FILE, int (*)(std::FILE*)> in(std::fopen(m.file.c_str(), "rb"),
                                                         &std::fclose);
      if (!in) continue;  // delivered or moved meanwhile: Maildir allows that
      auto stream = writer.start(options);
      std::size_t n;
      while ((n = std::fread(buf.data(), 1, buf.size(), in.get())) > 0) {
        if (auto w = stream->write(std::string_view(buf.data(), n)); !w) {
          progress.clear();
          fail_with(w.error(), fmt::format("writing {}", m.file.string()));
        }
      }
      writer.done(*stream, m.size, m.file.string());
      progress.advance(m.size);
    }
    progress.clear();
    writer.finish(fmt::format("the last messages of {}", folder.dir.string()));
  }
  progress.clear();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fmt::print("imported {} messages ({} bytes) into {} mailboxes in {:.1f}s\n", imported,
             progress.bytes(), plan.size(), secs);
}

// ---- mbox ---------------------------------------------------------------------------------------

/// The date of a "From sender Wed Nov 22 10:59:44 2026" separator line, or nullopt.
std::optional<int64_t> mbox_date(const std::string& line) {
  auto first = line.find(' ', 5);
  if (first == std::string::npos) return std::nullopt;
  std::string rest = line.substr(first + 1);
  while (!rest.empty() && (rest.back() == '\n' || rest.back() == '\r')) rest.pop_back();
  std::tm tm{};
  const char* end = ::strptime(rest.c_str(), "%a %b %d %H:%M:%S %Y", &tm);
  if (end == nullptr) return std::nullopt;
  return static_cast<int64_t>(::timegm(&tm));
}

bool is_from_line(const std::string& line) { return line.rfind("From ", 0) == 0; }

/// Status/X-Status/X-Keywords (mutt, Dovecot): flags in mbox headers, removed on import.
bool mbox_flag_header(const std::string& line, spi::Flags& flags) {
  auto value_of = [&](std::string_view name) -> std::optional<std::string> {
    if (line.size() <= name.size() || strncasecmp(line.c_str(), name.data(), name.size()) != 0) {
      return std::nullopt;
    }
    std::string v = line.substr(name.size());
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
    return v;
  };
  if (auto v = value_of("Status:")) {
    if (v->find('R') != std::string::npos) flags.system |= spi::kFlagSeen;
    return true;
  }
  if (auto v = value_of("X-Status:")) {
    if (v->find('A') != std::string::npos) flags.system |= spi::kFlagAnswered;
    if (v->find('F') != std::string::npos) flags.system |= spi::kFlagFlagged;
    if (v->find('T') != std::string::npos) flags.system |= spi::kFlagDraft;
    if (v->find('D') != std::string::npos) flags.system |= spi::kFlagDeleted;
    return true;
  }
  if (auto v = value_of("X-Keywords:")) {
    std::string word;
    for (char c : *v + " ") {
      if (c == ' ' || c == ',' || c == '\t') {
        if (!word.empty()) flags.keywords.push_back(word);
        word.clear();
      } else {
        word += c;
      }
    }
    return true;
  }
  return false;
}

/// Flags live in a block of Status/X-Status/X-Keywords lines that starts with Status: and ends
/// the header, as export (and mutt, Dovecot) write it. Only that block is read and removed:
/// the same field names elsewhere in a header belong to the message and are kept byte for byte.
void take_flag_headers(std::vector<std::string>& header, spi::Flags& flags) {
  std::size_t start = header.size();
  while (start > 0) {
    spi::Flags probe;
    if (!mbox_flag_header(header[start - 1], probe)) break;
    --start;
  }
  // The block must begin with Status: (skip leading X- lines that belong to the message).
  while (start < header.size() && strncasecmp(header[start].c_str(), "Status:", 7) != 0) ++start;
  if (start == header.size()) return;
  for (std::size_t i = start; i < header.size(); ++i) mbox_flag_header(header[i], flags);
  header.erase(header.begin() + static_cast<std::ptrdiff_t>(start), header.end());
}

void import_mbox(spi::Store& store, const fs::path& file, const std::string& mailbox) {
  std::FILE* in = std::fopen(file.c_str(), "rb");
  if (in == nullptr) exit_command(EX_NOINPUT, fmt::format("{}: cannot open", file.string()));
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> closer(in, &std::fclose);
  std::error_code ec;
  Progress progress(fs::file_size(file, ec));
  auto started = std::chrono::steady_clock::now();
  ensure_mailbox(store, mailbox);

  char* raw = nullptr;
  std::size_t cap = 0;
  std::unique_ptr<char, void (*)(void*)> line_buf(nullptr, &std::free);
  auto next_line = [&](std::string& line) {
    ssize_t n = ::getline(&raw, &cap, in);
    line_buf.release();
    line_buf.reset(raw);
    if (n < 0) return false;
    line.assign(raw, static_cast<std::size_t>(n));
    return true;
  };

  std::string line;
  bool have = next_line(line);
  while (have && !is_from_line(line)) have = next_line(line);  // junk before the first message
  if (!have) exit_command(EX_DATAERR, fmt::format("{}: no \"From \" line: not an mbox", file.string()));
  uint64_t mailbox_messages = 0;
  uint64_t imported = 0;
  BatchWriter writer(store, mailbox, imported);
  while (have) {
    // `line` is a separator.
    uint64_t message_bytes = line.size();
    spi::AppendOptions options;
    options.internal_date = mbox_date(line);
    std::vector<std::string> header;
    bool in_header = true;
    while ((have = next_line(line)) && in_header) {
      message_bytes += line.size();
      if (line == "\n" || line == "\r\n") {
        take_flag_headers(header, options.flags);
        header.push_back(line);
        in_header = false;
        break;
      }
      header.push_back(line);
    }
    std::sort(options.flags.keywords.begin(), options.flags.keywords.end());
    auto stream = writer.start(options);
    for (auto& h : header) {
      if (auto w = stream->write(h); !w) fail_with(w.error(), "writing a message");
    }
    // The body runs to the next "From " line after a blank line; that blank line belongs to
    // the mbox, not the message. mboxrd: ">From " lines lose one '>'.
    bool held_blank = false;
    if (in_header) have = false;  // the file ended inside a header
    while (have && !in_header) {
      have = next_line(line);
      if (!have) break;
      message_bytes += line.size();
      bool blank = line == "\n" || line == "\r\n";
      if (held_blank && is_from_line(line)) break;
      if (held_blank) {
        if (auto w = stream->write("\n"); !w) fail_with(w.error(), "writing a message");
        held_blank = false;
      }
      if (blank) {
        held_blank = true;
        continue;
      }
      std::size_t quotes = line.find_first_not_of('>');
      if (quotes != std::string::npos && quotes > 0 && line.compare(quotes, 5, "From ") == 0) {
        line.erase(0, 1);
      }
      if (auto w = stream->write(line); !w) fail_with(w.error(), "writing a message");
    }
    // A blank line still held at the end of the file is the mbox's separator too: dropped.
    writer.done(*stream, message_bytes,
                fmt::format("message {} of {}", mailbox_messages + 1, file.string()));
    ++mailbox_messages;
    progress.advance(message_bytes);
  }
  progress.clear();
  writer.finish(fmt::format("the last messages of {}", file.string()));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fmt::print("imported {} messages ({} bytes) into {} in {:.1f}s\n", imported,
             progress.bytes(), mailbox, secs);
}

struct ImportOptions {
  std::string user;
  std::string from;
  std::string to_mailbox;
};

void run_import(const GlobalOptions& global, const ImportOptions& opts) {
  auto colon = opts.from.find(':');
  std::string kind = colon == std::string::npos ? "" : opts.from.substr(0, colon);
  std::string where = colon == std::string::npos ? "" : opts.from.substr(colon + 1);
  if ((kind != "maildir" && kind != "mbox") || where.empty()) {
    exit_command(EX_USAGE, "--from must be maildir:PATH or mbox:FILE");
  }
  Core core = open_core(global);
  auto store = open_user_store_or_exit(core, opts.user);
  if (kind == "maildir") {
    import_maildir(*store, where, opts.to_mailbox);
  } else {
    import_mbox(*store, where, opts.to_mailbox.empty() ? "INBOX" : opts.to_mailbox);
  }
}

}  // namespace

void add_import_command(CLI::App& app, GlobalOptions& global) {
  auto opts = std::make_shared<ImportOptions>();
  auto* cmd = app.add_subcommand("import", "Import mail from a Maildir or an mbox file");
  cmd->add_option("-u,--user", opts->user, "User whose store receives the mail")->required();
  cmd->add_option("--from", opts->from, "maildir:PATH (with its .Sub.Folders) or mbox:FILE")
      ->required();
  cmd->add_option("--to-mailbox", opts->to_mailbox,
                  "Mailbox to import into (Maildir subfolders go beneath it); default: "
                  "INBOX and the Maildir's own folders");
  cmd->callback([&global, opts] { run_import(global, *opts); });
}

}  // namespace mailaccess::cli
