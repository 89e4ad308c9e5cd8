#pragma once
// The one JSON writer and the one set of number formatters of the project.
//
// Numbers as text (each keeps the exact bytes of an output format in use):
//   format_number(v)        integer-valued |v| < 1e15 as an integer ("3", "-2", "0"), else
//                           printf "%.6g"; NaN as "nan", infinities as "inf" / "-inf".
//                           summary.csv, aggregate.csv, buckets.csv, summary.json.
//   format_g(v, precision)  printf "%.<precision>g" (NaN/inf as printf writes them):
//                           precision 6 for synth's messages, 9 for `moba info`.
//   format_shortest(v)      whole numbers below 1e15 as integers ("80", "-3"), else the
//                           shortest "%.<p>g", p in 1..17, that reads back as exactly v
//                           (HDF5 attributes as text, sweep budgets).
//
// JSON: strings are escaped by json_escape (", \, \n, \t, \r; other bytes < 0x20 as \u00XX;
// everything else, UTF-8 included, as is). json_number(v) is format_number(v) for finite v
// and null otherwise. JsonObject writes one object on one line in the house style
// {"key": value, "key2": value2} (", " between members, ": " after keys), keys in call order.
#include <cstdint>
#include <string>
#include <vector>

namespace moba {

std::string format_number(double v);
// format_number(v) appended to `out` (the tables' writers: no temporary string per number).
void append_number(std::string& out, double v);
std::string format_g(double v, int precision);
std::string format_shortest(double v);

std::string json_escape(const std::string& s);  // the characters between the quotes
std::string json_string(const std::string& s);  // quoted and escaped
std::string json_number(double v);              // format_number, or null when not finite
// "[a, b, c]": the items (each already JSON) joined by ", ".
std::string json_array(const std::vector<std::string>& items);

class JsonObject {
 public:
  JsonObject& add_string(const std::string& key, const std::string& value);
  JsonObject& add_number(const std::string& key, double value);  // json_number
  JsonObject& add_integer(const std::string& key, int64_t value);
  JsonObject& add_bool(const std::string& key, bool value);
  JsonObject& add_null(const std::string& key);
  // `json` is inserted as is: a nested object (JsonObject::str()), array or literal.
  JsonObject& add_raw(const std::string& key, const std::string& json);
  std::string str() const { return "{" + body_ + "}"; }

 private:
  void add_key(const std::string& key);
  std::string body_;
};

}  // namespace moba
