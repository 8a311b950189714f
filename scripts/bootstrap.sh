#!/usr/bin/env bash
# Set up a fresh Debian 12 machine for wheelforge.
#   bash scripts/bootstrap.sh          build tools (apt) + wheelforge, editable, in the project venv .venv
#   bash scripts/bootstrap.sh --test   also the test suite's real services and clients (apt) and test dependencies
# Python packages go into .venv only: pip never runs for the system interpreter (installing there
# upgraded packages other tools on the machine depend on). Run wheelforge as .venv/bin/invoke, or
# `. .venv/bin/activate` first. A CUDA toolkit is not installed here: wheelforge finds one (CUDA_HOME,
# PATH, /usr/local/cuda*).
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1
venv=.venv

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

apt_packages=(git cmake ninja-build ccache patchelf)
# Debian's python3 has no ensurepip (so no `python3 -m venv`) without python3-venv.
python3 -c "import ensurepip" 2>/dev/null || apt_packages+=(python3-venv)
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

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"

spec="."
[ "$with_tests" = 1 ] && spec=".[test]"
# Skip pip when this venv already holds this pyproject.toml's dependencies ("[test]" covers both), so a
# second run, e.g. the test command after the build command, costs nothing.
stamp="$venv/.wheelforge-bootstrap"
pyproject="$(sha256sum pyproject.toml | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [ "$have" != "$pyproject $spec" ] && [ "$have" != "$pyproject .[test]" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$spec"
  echo "$pyproject $spec" > "$stamp"
fi
