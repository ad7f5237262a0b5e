#!/usr/bin/env bash
# Installs ikv's build and test dependencies from Debian packages. Idempotent: when every package
# is already installed it only runs dpkg queries (well under a second).
set -euo pipefail
# libdnnl-dev's CMake config runs find_package(OpenCL REQUIRED), yet it only Recommends the OpenCL
# headers and library (ocl-icd-opencl-dev). tests/cli/deps.sh fails when the build uses a file from
# a package that this list does not bring in through Depends.
PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libeigen3-dev libdnnl-dev ocl-icd-opencl-dev libcli11-dev libyaml-cpp-dev libsentencepiece-dev doctest-dev
  nlohmann-json3-dev libsqlite3-dev libssl-dev libcairo2-dev libpcre2-dev libicu-dev
  clang libclang-rt-14-dev
  openmpi-bin libopenmpi-dev
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
