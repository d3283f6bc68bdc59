// pickscore/core/error.hpp — the one exception type of the library and the helpers that build it.
//
// Library code never calls exit/abort on bad input: it throws pickscore::Error (or a subclass)
// whose message names the operation, the argument and what was expected.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace pickscore {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Shapes, dtypes or devices that do not fit together.
class ShapeError : public Error {
public:
    using Error::Error;
};

// A file or byte stream that cannot be parsed (safetensors, images, datasets, vocabularies).
class FormatError : public Error {
public:
    using Error::Error;
};

// Reading or writing a file failed at the operating-system level.
class IoError : public Error {
public:
    using Error::Error;
};

namespace detail {
template <class... Parts>
std::string concat(Parts&&... parts) {
    std::ostringstream os;
    (os << ... << std::forward<Parts>(parts));
    return os.str();
}
}  // namespace detail

// Throws E with the concatenation of parts (anything with operator<<).
template <class E = Error, class... Parts>
[[noreturn]] void fail(Parts&&... parts) {
    throw E(detail::concat(std::forward<Parts>(parts)...));
}

// Throws E when cond is false; the message parts are only formatted on failure.
template <class E = Error, class... Parts>
inline void require(bool cond, Parts&&... parts) {
    if (!cond) fail<E>(std::forward<Parts>(parts)...);
}

}  // namespace pickscore
