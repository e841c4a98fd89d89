// The plugin loader. Checks follow STYLE.md, "How a plugin declares itself", in order:
//   1. the file opens (RTLD_NOW | RTLD_LOCAL) and `mailaccess_plugin` is defined in *that* file;
//   2. abi_version, descriptor_size and build_signature match the core's;
//   3. kind is known, name is non-empty and not taken, every dependency is loaded (load order
//      is a topological sort);
//   4. create and destroy are non-null;
// then create() must return an object. Each refusal is one line naming the file and reason.
// Models: nginx ngx_add_module(), Dovecot module_load(), LLVM PassPlugin::Load().

#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include <boost/dll/shared_library.hpp>
#include <fmt/format.h>

#include "mailaccess/host.hpp"
#include "mailaccess/plugins.hpp"
#include "mailaccess/spi/plugin_abi.h"

namespace mailaccess {
namespace {

namespace fs = std::filesystem;
constexpr const char* kSymbol = "mailaccess_plugin";
constexpr std::size_t kMaxNameBytes = 64;

const char* kind_name(uint32_t kind) {
  switch (kind) {
    case MAILACCESS_PLUGIN_PROTOCOL: return "protocol";
    case MAILACCESS_PLUGIN_PROTOCOL_EXTENSION: return "protocol-extension";
    case MAILACCESS_PLUGIN_BACKEND: return "backend";
    case MAILACCESS_PLUGIN_INDEX: return "index";
    case MAILACCESS_PLUGIN_AUTH: return "auth";
    default: return nullptr;
  }
}

// Plugin names double as config section names: keep them plain.
bool valid_plugin_name(std::string_view name) {
  return !name.empty() && name.size() <= kMaxNameBytes &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
         });
}

// What a plugin sees as its Host: forwards everything and remembers what the plugin registered
// so that it can be taken back before the plugin is destroyed.
class ScopedHost final : public spi::Host {
 public:
  explicit ScopedHost(spi::Host& host) : host_(host) {}

  void declare_config(std::vector<spi::ConfigKey> keys) noexcept override {
    host_.declare_config(std::move(keys));
  }
  std::shared_ptr<const spi::ConfigView> config() const noexcept override { return host_.config(); }
  void log(spi::LogLevel level, std::string_view component, std::string_view connection_id,
           std::string_view message) noexcept override {
    host_.log(level, component, connection_id, message);
  }
  spi::Auth& auth() noexcept override { return host_.auth(); }
  spi::ChangeBus& change_bus() noexcept override { return host_.change_bus(); }
  Result<std::unique_ptr<spi::Store>> open_store(std::string_view user) noexcept override {
    return host_.open_store(user);
  }
  void register_protocol(spi::ProtocolFactory& factory) noexcept override {
    try {
      protocols_.push_back(&factory);
    } catch (...) {
      return;
    }
    host_.register_protocol(factory);
  }
  void register_backend(spi::StorageBackend& backend) noexcept override {
    try {
      backends_.push_back(&backend);
    } catch (...) {
      return;
    }
    host_.register_backend(backend);
  }
  void register_service(std::string_view name, void* service) noexcept override {
    try {
      services_.emplace_back(std::string(name), service);
    } catch (...) {
      return;
    }
    host_.register_service(name, service);
  }
  void* find_service(std::string_view name) const noexcept override {
    return host_.find_service(name);
  }
  const std::string& state_dir() const noexcept override { return host_.state_dir(); }

  // Takes back every registration (only a CoreHost can forget; another Host keeps them).
  void withdraw() noexcept {
    if (auto* core = dynamic_cast<CoreHost*>(&host_)) {
      for (auto* p : protocols_) core->unregister_protocol(*p);
      for (auto* b : backends_) core->unregister_backend(*b);
      for (auto& [name, service] : services_) core->unregister_service(name, service);
    }
    protocols_.clear();
    backends_.clear();
    services_.clear();
  }

 private:
  spi::Host& host_;
  std::vector<spi::ProtocolFactory*> protocols_;
  std::vector<spi::StorageBackend*> backends_;
  std::vector<std::pair<std::string, void*>> services_;
};

// A file that passed checks 1-2 and the static part of 3.
struct Candidate {
  std::size_t record;
  boost::dll::shared_library library;
  const mailaccess_plugin_descriptor* descriptor = nullptr;
};

struct Loaded {
  std::size_t record;
  std::string name;
  std::vector<std::string> dependencies;
  const mailaccess_plugin_descriptor* descriptor = nullptr;
  std::unique_ptr<ScopedHost> host;
  spi::Plugin* plugin = nullptr;
  bool started = false;
};

}  // namespace

const char* to_string(PluginRecord::Status status) noexcept {
  switch (status) {
    case PluginRecord::Status::Loaded: return "loaded";
    case PluginRecord::Status::Refused: return "refused";
    case PluginRecord::Status::Disabled: return "disabled";
  }
  return "refused";
}

std::string refusal_line(const PluginRecord& record) {
  return fmt::format("{}: {}", record.file, record.reason);
}

struct PluginManager::Impl {
  explicit Impl(spi::Host& h) : host(h) {}

  spi::Host& host;
  std::vector<PluginRecord> records;
  std::vector<Loaded> loaded;  // load order
  // Libraries close last, after every object made from them is gone; declared after
  // `loaded` is irrelevant because ~PluginManager tears down explicitly.
  std::vector<boost::dll::shared_library> libraries;
  std::vector<std::string> required;

  void refuse(std::size_t record, std::string reason) {
    auto& r = records[record];
    r.status = PluginRecord::Status::Refused;
    r.reason = std::move(reason);
    host.log(spi::LogLevel::Warning, "plugins", "", "refused " + refusal_line(r));
  }

  bool is_loaded(std::string_view name) const {
    return std::any_of(loaded.begin(), loaded.end(),
                       [&](const Loaded& l) { return l.name == name; });
  }

  // Checks 1, 2 and the static part of 3 (kind, name). nullopt: refused (recorded).
  std::optional<Candidate> inspect(const std::string& path);
  // Dependencies, create/destroy, create(): the dynamic part.
  void instantiate(Candidate candidate);
  // Stops, withdraws and destroys loaded[i] (no library is closed here).
  void destroy(std::size_t i) noexcept;
};

std::optional<Candidate> PluginManager::Impl::inspect(const std::string& path) {
  records.push_back(PluginRecord{});
  std::size_t index = records.size() - 1;
  records[index].file = path;

  std::error_code link_ec;
  if (fs::is_symlink(path, link_ec) && !fs::exists(path, link_ec)) {
    refuse(index, fmt::format("broken symlink: its target '{}' does not exist",
                              fs::read_symlink(path, link_ec).string()));
    return std::nullopt;
  }

  Candidate c;
  c.record = index;
  boost::dll::fs::error_code ec;
  dlerror();
  c.library.load(fs::path(path), ec,
                 boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  if (ec || !c.library.is_loaded()) {
    const char* why = dlerror();
    std::string text = why ? why : ec.message();
    // dlerror repeats the path; the refusal line names the file already.
    if (auto at = text.find(path + ": "); at == 0) text.erase(0, path.size() + 2);
    refuse(index, fmt::format("not a plugin: cannot be loaded ({})", text));
    return std::nullopt;
  }
  if (!c.library.has(kSymbol)) {
    refuse(index, fmt::format("not a plugin: no '{}' symbol", kSymbol));
    return std::nullopt;
  }
  const auto& descriptor = c.library.get<const mailaccess_plugin_descriptor>(kSymbol);
  // dlsym also searches the file's own dependencies; the descriptor must be defined here.
  Dl_info info{};
  link_map* map = nullptr;
  if (dladdr(&descriptor, &info) == 0 ||
      dlinfo(c.library.native(), RTLD_DI_LINKMAP, &map) != 0 || !map ||
      info.dli_fbase != reinterpret_cast<void*>(map->l_addr)) {
    refuse(index, fmt::format("not a plugin: '{}' is not defined in this file{}", kSymbol,
                              info.dli_fname ? fmt::format(" but in {}", info.dli_fname) : ""));
    return std::nullopt;
  }
  c.descriptor = &descriptor;

  // Check 2: read only the leading fields until the layout is known to match.
  if (descriptor.abi_version != MAILACCESS_PLUGIN_ABI_VERSION) {
    refuse(index, fmt::format("built for plugin ABI {}, this mailaccess has ABI {}: rebuild the "
                              "plugin against this libmailaccess",
                              descriptor.abi_version, MAILACCESS_PLUGIN_ABI_VERSION));
    return std::nullopt;
  }
  if (descriptor.descriptor_size != sizeof(mailaccess_plugin_descriptor)) {
    refuse(index, fmt::format("descriptor size {}, expected {}: rebuild the plugin against this "
                              "libmailaccess",
                              descriptor.descriptor_size, sizeof(mailaccess_plugin_descriptor)));
    return std::nullopt;
  }
  const char* signature = descriptor.build_signature;
  if (!signature || std::strcmp(signature, MAILACCESS_BUILD_SIGNATURE) != 0) {
    refuse(index, fmt::format("built with '{}', this mailaccess with '{}': rebuild the plugin "
                              "with the same compiler and C++ library",
                              signature ? signature : "(none)", MAILACCESS_BUILD_SIGNATURE));
    return std::nullopt;
  }

  auto& r = records[index];
  r.name = descriptor.name ? descriptor.name : "";
  r.version = descriptor.version ? descriptor.version : "";
  for (auto dep = descriptor.dependencies; dep && *dep; ++dep) r.dependencies.emplace_back(*dep);
  const char* kind = kind_name(descriptor.kind);
  if (!kind) {
    refuse(index, fmt::format("unknown plugin kind {}", static_cast<uint32_t>(descriptor.kind)));
    return std::nullopt;
  }
  r.kind = kind;
  if (r.name.empty()) {
    refuse(index, "empty plugin name");
    return std::nullopt;
  }
  if (!valid_plugin_name(r.name)) {
    refuse(index, fmt::format("invalid plugin name '{}': use a-z, 0-9, '-' and '_'", r.name));
    return std::nullopt;
  }
  return c;
}

void PluginManager::Impl::instantiate(Candidate c) {
  auto& r = records[c.record];
  for (const auto& dep : r.dependencies) {
    if (!is_loaded(dep)) {
      // Say why the dependency is not there when it was seen.
      std::string why;
      for (const auto& other : records) {
        if (other.name == dep && &other != &r) {
          why = fmt::format(" ({})", to_string(other.status));
        }
      }
      refuse(c.record, fmt::format("missing dependency '{}'{}", dep, why));
      return;
    }
  }
  if (!c.descriptor->create) {
    refuse(c.record, "descriptor has no create() function");
    return;
  }
  if (!c.descriptor->destroy) {
    refuse(c.record, "descriptor has no destroy() function");
    return;
  }
  Loaded l;
  l.record = c.record;
  l.name = r.name;
  l.dependencies = r.dependencies;
  l.descriptor = c.descriptor;
  l.host = std::make_unique<ScopedHost>(host);
  l.plugin = c.descriptor->create(*l.host);
  if (!l.plugin) {
    l.host->withdraw();
    refuse(c.record, "create() failed");
    libraries.push_back(std::move(c.library));
    return;
  }
  r.status = PluginRecord::Status::Loaded;
  r.reason.clear();
  loaded.push_back(std::move(l));
  libraries.push_back(std::move(c.library));
}

void PluginManager::Impl::destroy(std::size_t i) noexcept {
  Loaded& l = loaded[i];
  if (!l.plugin) return;
  if (l.started) {
    l.plugin->stop();
    l.started = false;
  }
  l.host->withdraw();
  l.descriptor->destroy(l.plugin);
  l.plugin = nullptr;
}

PluginManager::PluginManager(spi::Host& host) : impl_(std::make_unique<Impl>(host)) {}

PluginManager::~PluginManager() {
  stop_all();
  for (std::size_t i = impl_->loaded.size(); i-- > 0;) impl_->destroy(i);
  impl_->loaded.clear();
  // Now no object from any plugin is alive: close the libraries, last loaded first.
  while (!impl_->libraries.empty()) impl_->libraries.pop_back();
}

Result<void> PluginManager::load(const std::string& dir, const std::vector<std::string>& enabled,
                                 const std::vector<std::string>& required) {
  try {
    impl_->required.insert(impl_->required.end(), required.begin(), required.end());
    std::vector<std::string> files;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const auto& p = it->path();
      if (p.extension() != ".so") continue;
      std::error_code type_ec;
      // Follows symlinks (the build tree and distributions link plugins in). A link whose
      // target is gone is kept so that inspect() refuses it by name: an operator who removed a
      // plugin package but not its link sees why the plugin is missing.
      auto st = fs::status(p, type_ec);
      bool dangling = st.type() == fs::file_type::not_found && fs::is_symlink(p, type_ec);
      if (!dangling && st.type() != fs::file_type::regular) continue;
      files.push_back(p.string());
    }
    if (ec) {
      return fail(ErrorCode::NotFound,
                  fmt::format("plugin directory '{}' cannot be read: {}", dir, ec.message()),
                  "set server.plugin_dir or --plugin-dir");
    }
    std::sort(files.begin(), files.end());

    std::vector<Candidate> candidates;
    std::map<std::string, std::string> taken;  // name -> file, including earlier loads
    for (const auto& l : impl_->loaded) taken[l.name] = impl_->records[l.record].file;
    for (const auto& file : files) {
      auto c = impl_->inspect(file);
      if (!c) continue;
      auto& r = impl_->records[c->record];
      if (auto it = taken.find(r.name); it != taken.end()) {
        impl_->refuse(c->record, fmt::format("duplicate plugin name '{}' (already loaded from {})",
                                             r.name, it->second));
        impl_->libraries.push_back(std::move(c->library));
        continue;
      }
      taken[r.name] = file;
      if (!enabled.empty() && std::find(enabled.begin(), enabled.end(), r.name) == enabled.end()) {
        r.status = PluginRecord::Status::Disabled;
        r.reason = "not listed in server.plugins";
        continue;  // the library closes here: nothing was created from it
      }
      candidates.push_back(std::move(*c));
    }

    // Kahn's algorithm over the candidates; ties go in file-name order.
    std::map<std::string, std::size_t> by_name;
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      by_name[impl_->records[candidates[i].record].name] = i;
    }
    std::vector<std::size_t> pending(candidates.size(), 0);
    std::vector<std::vector<std::size_t>> dependents(candidates.size());
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      for (const auto& dep : impl_->records[candidates[i].record].dependencies) {
        if (auto it = by_name.find(dep); it != by_name.end() && it->second != i) {
          ++pending[i];
          dependents[it->second].push_back(i);
        }
      }
    }
    std::set<std::size_t> ready;
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      if (pending[i] == 0) ready.insert(i);
    }
    std::vector<bool> done(candidates.size(), false);
    while (!ready.empty()) {
      std::size_t i = *ready.begin();
      ready.erase(ready.begin());
      done[i] = true;
      impl_->instantiate(std::move(candidates[i]));
      for (auto d : dependents[i]) {
        if (--pending[d] == 0) ready.insert(d);
      }
    }
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      if (done[i]) continue;
      impl_->refuse(candidates[i].record, "dependency cycle");
      impl_->libraries.push_back(std::move(candidates[i].library));
    }

    for (const auto& name : enabled) {
      bool seen = std::any_of(impl_->records.begin(), impl_->records.end(),
                              [&](const PluginRecord& r) { return r.name == name; });
      if (!seen) {
        PluginRecord r;
        r.file = (fs::path(dir) / (name + ".so")).string();
        r.name = name;
        r.status = PluginRecord::Status::Refused;
        r.reason = "listed in server.plugins but not found";
        impl_->records.push_back(std::move(r));
        impl_->host.log(spi::LogLevel::Warning, "plugins", "",
                        "refused " + refusal_line(impl_->records.back()));
      }
    }
    for (const auto& name : required) {
      if (impl_->is_loaded(name)) continue;
      std::string why = "not found";
      for (const auto& r : impl_->records) {
        if (r.name == name) why = r.reason;
      }
      return fail(ErrorCode::NotPossible,
                  fmt::format("required plugin '{}' was not loaded: {}", name, why));
    }
    return {};
  } catch (const std::exception& e) {
    return fail(ErrorCode::Internal, "cannot load plugins", e.what());
  }
}

void PluginManager::load_file(const std::string& path) {
  auto c = impl_->inspect(path);
  if (!c) return;
  auto& r = impl_->records[c->record];
  for (const auto& l : impl_->loaded) {
    if (l.name == r.name) {
      impl_->refuse(c->record, fmt::format("duplicate plugin name '{}' (already loaded from {})",
                                           r.name, impl_->records[l.record].file));
      impl_->libraries.push_back(std::move(c->library));
      return;
    }
  }
  impl_->instantiate(std::move(*c));
}

Result<void> PluginManager::start_all() {
  std::set<std::string> failed;
  for (std::size_t i = 0; i < impl_->loaded.size(); ++i) {
    Loaded& l = impl_->loaded[i];
    if (!l.plugin || l.started) continue;
    auto dep_failed = std::find_if(l.dependencies.begin(), l.dependencies.end(),
                                   [&](const std::string& d) { return failed.count(d) > 0; });
    if (dep_failed != l.dependencies.end()) {
      impl_->destroy(i);
      impl_->refuse(l.record, fmt::format("dependency '{}' failed to start", *dep_failed));
      failed.insert(l.name);
      continue;
    }
    auto started = l.plugin->start();
    if (started) {
      l.started = true;
      continue;
    }
    std::string why = started.error().message;
    if (!started.error().detail.empty()) why += " (" + started.error().detail + ")";
    failed.insert(l.name);
    // Dependents were created (and may hold this plugin's services): take them down first.
    for (std::size_t j = impl_->loaded.size(); j-- > i + 1;) {
      Loaded& d = impl_->loaded[j];
      bool depends = std::any_of(d.dependencies.begin(), d.dependencies.end(),
                                 [&](const std::string& n) { return failed.count(n) > 0; });
      if (d.plugin && depends) {
        impl_->destroy(j);
        impl_->refuse(d.record, fmt::format("dependency '{}' failed to start", l.name));
        failed.insert(d.name);
      }
    }
    impl_->destroy(i);
    impl_->refuse(l.record, fmt::format("start() failed: {}", why));
  }
  std::erase_if(impl_->loaded, [](const Loaded& l) { return l.plugin == nullptr; });
  for (const auto& name : impl_->required) {
    if (failed.count(name)) {
      return fail(ErrorCode::NotPossible, fmt::format("required plugin '{}' failed to start", name));
    }
  }
  return {};
}

void PluginManager::stop_all() noexcept {
  for (std::size_t i = impl_->loaded.size(); i-- > 0;) {
    Loaded& l = impl_->loaded[i];
    if (l.plugin && l.started) {
      l.plugin->stop();
      l.started = false;
    }
  }
}

const std::vector<PluginRecord>& PluginManager::records() const noexcept {
  return impl_->records;
}

std::vector<std::string> PluginManager::loaded_names() const {
  std::vector<std::string> names;
  for (const auto& l : impl_->loaded) {
    if (l.plugin) names.push_back(l.name);
  }
  return names;
}

}  // namespace mailaccess
