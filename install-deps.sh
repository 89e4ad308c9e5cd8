#!/usr/bin/env bash
# Installs every Debian package MoBA Workbench needs to build, test and run (CPU build,
# GUI and the Python dump tools). Idempotent; run as root or with sudo available.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(
  build-essential cmake ninja-build git pkg-config
  libhdf5-dev zlib1g-dev libeigen3-dev catch2          # core (zlib: analysis.h5 chunks), kernels, tests
  libtomlplusplus-dev                                   # moba sweep configs (TOML)
  openmpi-bin libopenmpi-dev                            # moba sweep under mpirun (optional: MOBA_MPI)
  libimgui-dev libglfw3-dev libgl-dev xvfb xauth        # gui (Dear ImGui + GLFW/OpenGL), headless screenshots
  python3 python3-numpy python3-h5py                    # independent test writers, dump tools
  python3-matplotlib                                    # moba plot (figures and index.html)
  bible-kjv                                             # public-domain long text for real dumps
  time                                                  # /usr/bin/time -v for peak-RSS checks
  clang libfuzzer-14-dev libomp-14-dev                  # tests/fuzz (libFuzzer + OpenMP for clang)
)
# Already complete (e.g. the second call in .ci/run, through the README's test command):
# nothing to do, no package lists fetched again.
missing=0
for p in "${PACKAGES[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing=$((missing + 1))
done
if [ "$missing" = 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages are installed"
  exit 0
fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
