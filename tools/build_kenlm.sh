#!/usr/bin/env bash
# Builds KenLM's estimator (`lmplz`) and `build_binary` from the kenlm source distribution on PyPI,
# the same version as the `kenlm` Python module that queries the models, into the venv's bin/.
#
#   tools/build_kenlm.sh VERSION VENV
#
# Needs a C++ compiler, CMake and Boost (program_options, system, thread) with zlib: on Debian or
# Ubuntu they are installed with apt-get when missing and this runs as root; elsewhere it stops
# and names the packages to install.
set -euo pipefail
version=$1
venv=$2
py="$venv/bin/python"

debian_packages=(cmake g++ libboost-program-options-dev libboost-system-dev libboost-thread-dev zlib1g-dev libbz2-dev liblzma-dev)
if command -v dpkg-query >/dev/null; then
    missing=()
    for package in "${debian_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
    done
    if ((${#missing[@]})); then
        if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
            echo "kenlm: installing ${missing[*]}"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        else
            echo "kenlm: missing packages ${missing[*]}: install them (sudo apt-get install ${missing[*]}) and rerun make" >&2
            exit 1
        fi
    fi
fi
for tool in cmake g++; do
    command -v "$tool" >/dev/null || { echo "kenlm: $tool is needed to build lmplz: install it and rerun make" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The venv's setuptools reads the source distribution's metadata: no isolated build environment.
"$py" -m pip download --quiet --no-deps --no-binary kenlm --no-build-isolation "kenlm==$version" -d "$work"
tar xzf "$work/kenlm-$version.tar.gz" -C "$work"
# KenLM asks for Boost.Test even when its tests are not built: asked no more, so that the build
# needs only the packages above.
sed -i '/^  unit_test_framework$/d' "$work/kenlm-$version/CMakeLists.txt"
cmake -S "$work/kenlm-$version" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=6 -DBUILD_TESTING=OFF >"$work/cmake.log" 2>&1 \
    || { cat "$work/cmake.log" >&2; exit 1; }
cmake --build "$work/build" --target lmplz build_binary -j "$(nproc)" >"$work/build.log" 2>&1 \
    || { tail -50 "$work/build.log" >&2; exit 1; }
install -m 755 "$work/build/bin/lmplz" "$work/build/bin/build_binary" "$venv/bin/"
echo "kenlm: built $venv/bin/lmplz and $venv/bin/build_binary (KenLM $version)"
