// Number formatters and the JSON writer (core/json_writer.h).
#include "core/json_writer.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace moba {

void append_number(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "nan";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "inf" : "-inf";
    return;
  }
  char buf[64];
  std::to_chars_result r;
  if (v == std::floor(v) && std::fabs(v) < 1e15)
    r = std::to_chars(buf, buf + sizeof buf, static_cast<long long>(v));
  else  // printf's "%.6g" (std::to_chars' general format with a precision is defined as that)
    r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, 6);
  out.append(buf, r.ptr);
}

std::string format_number(double v) {
  std::string s;
  append_number(s, v);
  return s;
}

std::string format_g(double v, int precision) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", precision, v);
  return buf;
}

std::string format_shortest(double v) {
  char buf[64];
  // Whole numbers as integers ("80", not the shorter "8e+01").
  if (std::isfinite(v) && v == std::trunc(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

std::string json_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (const unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

std::string json_string(const std::string& s) { return "\"" + json_escape(s) + "\""; }

std::string json_number(double v) { return std::isfinite(v) ? format_number(v) : "null"; }

void JsonObject::add_key(const std::string& key) {
  if (!body_.empty()) body_ += ", ";
  body_ += json_string(key) + ": ";
}

JsonObject& JsonObject::add_string(const std::string& key, const std::string& value) {
  add_key(key);
  body_ += json_string(value);
  return *this;
}

JsonObject& JsonObject::add_number(const std::string& key, double value) {
  add_key(key);
  body_ += json_number(value);
  return *this;
}

JsonObject& JsonObject::add_integer(const std::string& key, int64_t value) {
  add_key(key);
  body_ += std::to_string(value);
  return *this;
}

std::string json_array(const std::vector<std::string>& items) {
  std::string s = "[";
  for (size_t i = 0; i < items.size(); ++i) s += (i ? ", " : "") + items[i];
  return s + "]";
}

JsonObject& JsonObject::add_bool(const std::string& key, bool value) {
  add_key(key);
  body_ += value ? "true" : "false";
  return *this;
}

JsonObject& JsonObject::add_null(const std::string& key) {
  add_key(key);
  body_ += "null";
  return *this;
}

JsonObject& JsonObject::add_raw(const std::string& key, const std::string& json) {
  add_key(key);
  body_ += json;
  return *this;
}

}  // namespace moba
