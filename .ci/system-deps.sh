#!/usr/bin/env bash
# The system packages `make tools` needs to build KenLM's lmplz/build_binary (a C++ compiler,
# cmake, Boost, zlib/bzip2/xz headers). Called by the Makefile before anything slow, so a machine
# that lacks them is told within seconds, never after minutes of venv installation.
#
#   .ci/system-deps.sh [auto|print|skip]     (make: SYSTEM_DEPS=auto|print|skip)
#
# auto   Debian/Ubuntu: install the missing packages with apt-get when running as root, or
#        through `sudo -n` when sudo works without a password; otherwise exit 1 at once with the
#        exact command to run. Other systems: check for cmake and the Boost headers.
# print  say what `auto` would do, change nothing (exit 0)
# skip   do nothing (you installed the packages your own way)
set -euo pipefail

mode="${1:-auto}"
packages=(g++ cmake libboost-program-options-dev libboost-system-dev libboost-thread-dev
          libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev)

case "$mode" in
    skip) exit 0 ;;
    auto|print) ;;
    *) echo "system-deps: unknown mode '$mode' (auto, print or skip)" >&2; exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    # not Debian/Ubuntu: we cannot name the packages, only check for what the build uses
    if command -v cmake >/dev/null 2>&1 && { [ -e /usr/include/boost/version.hpp ] ||
                                              [ -e /usr/local/include/boost/version.hpp ]; }; then
        exit 0
    fi
    echo "system-deps: KenLM's tools need cmake, a C++ compiler and the Boost (program_options," \
         "system, thread, test), zlib, bzip2 and xz development packages; install them with" \
         "your package manager, then run make again with SYSTEM_DEPS=skip" >&2
    [ "$mode" = print ] && exit 0 || exit 1
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0

install="apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
    run=(bash -c "$install")
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    run=(sudo bash -c "$install")
else
    echo "system-deps: missing Debian packages: ${missing[*]}" >&2
    echo "system-deps: run this (as root), then make again:" >&2
    echo "    sudo apt-get install -y ${missing[*]}" >&2
    echo "system-deps: or install them your own way and add SYSTEM_DEPS=skip" >&2
    [ "$mode" = print ] && exit 0 || exit 1
fi

if [ "$mode" = print ]; then
    echo "system-deps: would run: ${run[*]}"
    exit 0
fi
echo "system-deps: installing ${missing[*]} for KenLM's tools (SYSTEM_DEPS=skip to opt out)"
"${run[@]}"
