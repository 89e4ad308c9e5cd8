#pragma once
// A sweep's run directory (docs/sweep.md):
//   DIR/config.resolved.toml   the config with every default filled in
//   DIR/jobs.tsv               every job: index, id, hash, dump, budget, analyze arguments
//   DIR/budgets.csv            matched attended-key budgets: per dump, target and B, the k chosen
//   DIR/provenance.json        (provenance.shard-I.json per shard; --collect merges them)
//   DIR/jobs/<id>/             the job's `moba analyze` outputs, then job.json and DONE (last)
//   DIR/logs/<id>.log          the job's stdout and stderr
//   DIR/sweep.csv              every done job's rows, in job order (collect())
// Every shared file is written to a unique temporary and renamed over the target, so a
// kill -9 leaves either the old or the new file, and shards can share DIR.
#include <string>
#include <vector>

#include "experiments/sweep/jobs.h"

namespace moba::sweep {

std::string read_file(const std::string& path);  // "" when absent

std::string job_dir(const std::string& dir, const Job& j);
std::string job_log(const std::string& dir, const Job& j);
// A job is done iff DIR/jobs/<id>/DONE holds the job's hash.
bool job_done(const std::string& dir, const std::string& id, const std::string& hash);
// Writes job.json and then the DONE marker into the finished job directory.
void mark_done(const std::string& dir, const Job& j);
// Removes what an unfinished run of the job left (the job dir, analyze's .partial/.old-*).
void clear_job(const std::string& dir, const Job& j);

std::string jobs_tsv(const std::vector<Job>& jobs);

struct CollectResult {
  int n_jobs = 0;
  int n_done = 0;
  size_t n_rows = 0;
  std::vector<std::string> missing;  // ids of jobs that are not done
};

// Rebuilds DIR/sweep.csv from DIR/jobs.tsv and the done job directories alone:
// columns job, dump, dump_sha256, budget_mode, budget_target, attended_keys_mean, then
// every column of the jobs' summary.csv; per job its summary.csv rows then its
// aggregate.csv rows. Throws InputError when DIR is not a sweep directory or a done job's
// tables are unreadable or have other columns than the rest.
CollectResult collect(const std::string& dir);

}  // namespace moba::sweep
