#pragma once
namespace mailaccess {
/// The release version of libmailaccess (not the plugin ABI version).
const char* version() noexcept;
}  // namespace mailaccess
