#!/usr/bin/env bash
# moba sweep under mpirun (MOBA_MPI builds; skipped, exit 77, without MPI): rank 0 hands the
# jobs out to the other ranks; -np 2 and -np 3 give a sweep.csv byte-equal to a serial run's,
# --resume under mpirun skips done jobs, and a bad config ends every rank with exit 2.
# usage: test_sweep_mpi.sh MOBA_BINARY WORK_DIR
source "$(dirname "$0")/sweep_common.sh"
command -v mpirun >/dev/null || { echo "SKIP: no mpirun (apt-get install openmpi-bin)"; exit 77; }
"$MOBA" sweep --help | grep "Built with MPI" >/dev/null || { echo "SKIP: moba built without MPI (MOBA_MPI=OFF)"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Open MPI's own allocations are not freed at exit: no leak report for the MPI ranks (ASan build).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

"$MOBA" sweep sweep.toml --out REF --quiet || fail "reference sweep failed"
for np in 2 3; do
  mpirun -np $np "$MOBA" sweep sweep.toml --out M$np 2>err$np.txt || { tail err$np.txt; fail "mpirun -np $np failed"; }
  csv_equal REF/sweep.csv M$np/sweep.csv
  grep -q "on rank 1" err$np.txt || fail "-np $np: no job ran on rank 1"
  [ $np = 2 ] || grep -q "on rank 2" err$np.txt || fail "-np $np: no job ran on rank 2"
  grep -q '"status": "complete"' M$np/provenance.json || fail "-np $np: provenance not complete"
  echo "mpirun -np $np: sweep.csv equal to the serial run"
done

# Resume under mpirun: a serial run killed part-way, then mpirun --resume.
"$MOBA" sweep sweep.toml --out P --quiet &
pid=$!
for _ in $(seq 3000); do [ "$(count_done P)" -ge 4 ] && break; sleep 0.01; done
kill -9 $pid; wait $pid 2>/dev/null || true
mpirun -np 2 "$MOBA" sweep sweep.toml --out P --resume 2>err.txt || { tail err.txt; fail "mpirun --resume failed"; }
grep -q "done already" err.txt || fail "mpirun --resume did not skip done jobs"
csv_equal REF/sweep.csv P/sweep.csv
echo "kill -9 + mpirun -np 2 --resume: equal"

printf 'dumps = ["dumps/s1.h5"]\nblock_sizes = [16]\ncolour = 1\n[budget]\ntop_k = 2\n' > bad.toml
expect_exit2 "bad.toml: colour" mpirun -np 2 "$MOBA" sweep bad.toml --out B
echo "bad config under mpirun -> exit 2"
echo "PASS"
