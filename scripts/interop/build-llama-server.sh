#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` from the llama.cpp tree that PyPI's
# llama-cpp-python source distribution vendors (llama.cpp has no Debian package
# here and PyPI has no wheels). cmake and ninja come from PyPI too.
#
# Usage: build-llama-server.sh CACHE_DIR PYTHON_VENV
# Leaves CACHE_DIR/llama-server-$LLAMA_CPP_PYTHON/bin/llama-server; does nothing
# if it is already there. Nothing is downloaded at build time: the web UI, its
# download and OpenSSL are off.
set -euo pipefail

cache=$1
venv=$2
version=${LLAMA_CPP_PYTHON:?}
sha256=${LLAMA_CPP_PYTHON_SHA256:?}
url=${LLAMA_CPP_PYTHON_URL:?}

prefix="$cache/llama-server-$version"
if [[ -x "$prefix/bin/llama-server" ]]; then
    exit 0
fi

work="$cache/build-llama-$version"
rm -rf "$work"
mkdir -p "$work"
sdist="$work/llama_cpp_python-$version.tar.gz"
curl -sSfL --retry 3 -o "$sdist" "$url"
echo "$sha256  $sdist" | sha256sum -c --quiet -
tar xzf "$sdist" -C "$work"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"

"$venv/bin/cmake" -S "$src" -B "$work/build" -G Ninja \
    -DCMAKE_MAKE_PROGRAM="$venv/bin/ninja" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF \
    -DGGML_OPENMP=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=ON \
    >"$work/configure.log" 2>&1 || { tail -30 "$work/configure.log" >&2; exit 1; }
"$venv/bin/cmake" --build "$work/build" --target llama-server -j "$(nproc)" \
    >"$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; exit 1; }

mkdir -p "$prefix/bin"
cp "$work/build/bin/llama-server" "$prefix/bin/llama-server.tmp"
mv "$prefix/bin/llama-server.tmp" "$prefix/bin/llama-server"
rm -rf "$work"
