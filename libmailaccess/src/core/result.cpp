#include "mailaccess/result.hpp"

namespace mailaccess {

const char* to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::Temp: return "temp";
    case ErrorCode::NotPossible: return "not-possible";
    case ErrorCode::Params: return "params";
    case ErrorCode::Perm: return "perm";
    case ErrorCode::NoQuota: return "no-quota";
    case ErrorCode::NotFound: return "not-found";
    case ErrorCode::Exists: return "exists";
    case ErrorCode::Expunged: return "expunged";
    case ErrorCode::InUse: return "in-use";
    case ErrorCode::Conversion: return "conversion";
    case ErrorCode::Limit: return "limit";
    case ErrorCode::Corrupt: return "corrupt";
    case ErrorCode::Internal: return "internal";
  }
  return "internal";
}

}  // namespace mailaccess
