#!/usr/bin/env bash
# Set up a fresh Debian 12 machine for wheelforge.
#   bash scripts/bootstrap.sh          build tools + wheelforge itself
#   bash scripts/bootstrap.sh --test   also the test suite's real services and clients
# A CUDA toolkit is not installed here: wheelforge finds one (CUDA_HOME, PATH, /usr/local/cuda*).
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

apt_packages=(git cmake ninja-build ccache patchelf)
if [ "$with_tests" = 1 ]; then
  # redis-server: the farm's shared compiler cache; chromium: the index page test; wrk: bench load
  apt_packages+=(redis-server chromium wrk)
fi
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$with_tests" = 1 ]; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e '.[test]'
else
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e .
fi
