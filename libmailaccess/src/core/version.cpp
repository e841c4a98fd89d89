#include "mailaccess/version.hpp"

namespace mailaccess {

const char* version() noexcept { return MAILACCESS_VERSION; }

}  // namespace mailaccess
