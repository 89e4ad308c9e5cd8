#pragma once
// Private to core/io: a small strict JSON parser (RFC 8259) for safetensors headers.
// Numbers keep their source text so integers up to 2^64 - 1 are read exactly. Nesting is
// limited to 64 levels so a hostile header cannot exhaust the stack.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace moba::io::json {

struct Value {
  enum class Type { null, boolean, number, string, array, object } type = Type::null;
  bool boolean = false;
  std::string text;                                     // string value, or a number's source text
  std::vector<Value> items;                             // array
  std::vector<std::pair<std::string, Value>> members;   // object, in source order

  // Member by key, or nullptr.
  const Value* find(const std::string& key) const;
  // A non-negative integer number that fits uint64; false otherwise.
  bool as_u64(uint64_t* out) const;
};

// Parses the whole of text (trailing whitespace allowed). On error returns false and sets
// *error to "PROBLEM at byte N".
bool parse(const std::string& text, Value* out, std::string* error);

}  // namespace moba::io::json
