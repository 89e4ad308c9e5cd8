#pragma once
// Typed errors of the core layer. Library code throws these and never exits;
// only main() turns them into exit codes (InputError/UsageError/OutputError -> 2, others -> 1).
#include <stdexcept>
#include <string>

namespace moba {

// Bad input: a file, dataset, tensor or field is missing, malformed or inconsistent.
// what() reads "FILE: FIELD: PROBLEM" so a user can find the offending piece.
class InputError : public std::runtime_error {
 public:
  InputError(std::string file, std::string field, std::string problem)
      : std::runtime_error(compose(file, field, problem)),
        file_(std::move(file)), field_(std::move(field)), problem_(std::move(problem)) {}
  const std::string& file() const { return file_; }
  const std::string& field() const { return field_; }
  const std::string& problem() const { return problem_; }

 private:
  static std::string compose(const std::string& file, const std::string& field,
                             const std::string& problem) {
    std::string s = file.empty() ? std::string("<input>") : file;
    if (!field.empty()) s += ": " + field;
    return s + ": " + problem;
  }
  std::string file_, field_, problem_;
};

// The file does not exist or cannot be opened.
class FileNotFoundError : public InputError { using InputError::InputError; };
// The bytes are not the format they claim (not HDF5, truncated, lying header, bad offsets).
class FormatError : public InputError { using InputError::InputError; };
// A tensor has the wrong rank, or q/k/v disagree on tokens, heads or head_dim.
class ShapeError : public InputError { using InputError::InputError; };
// An element type the schema does not allow.
class DTypeError : public InputError { using InputError::InputError; };
// NaN or Inf inside a tensor.
class ValueError : public InputError { using InputError::InputError; };
// A required group, dataset or attribute is absent (e.g. /layers/3).
class MissingFieldError : public InputError { using InputError::InputError; };

// Bad command line or configuration (unknown flag, out-of-range value). Exit code 2.
class UsageError : public std::runtime_error { using std::runtime_error::runtime_error; };

// An output cannot be written (a missing or read-only directory, a directory where a file goes,
// a full disk); what() names the file and the reason. Exit code 2.
class OutputError : public std::runtime_error { using std::runtime_error::runtime_error; };

// SIGINT or SIGTERM arrived during long work (core/interrupt.h). Exit code 128 + signal.
class Interrupted : public std::runtime_error {
 public:
  explicit Interrupted(int signal) : std::runtime_error("interrupted"), signal_(signal) {}
  int signal() const { return signal_; }

 private:
  int signal_;
};

}  // namespace moba
