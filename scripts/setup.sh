#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build bidchain: libclang (rocksdb's bindgen)
# and the wasm32-unknown-unknown target (the contracts). Safe to run again.
set -euo pipefail

# bindgen loads libclang.so or libclang-N.so; libclang-cpp.so (present on many machines
# without libclang-dev) is a different library and does not count.
has_libclang() {
  local f
  for f in /usr/lib/llvm-*/lib/libclang.so* /usr/lib/*/libclang.so* /usr/lib/*/libclang-[0-9]*.so*; do
    [ -e "$f" ] && return 0
  done
  ldconfig -p 2>/dev/null | grep -Eq 'libclang(-[0-9.]+)?\.so'
}

if ! has_libclang; then
  echo "setup: installing libclang-dev (needed by rocksdb's bindgen)"
  sudo_cmd=""
  if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq libclang-dev >/dev/null
fi

if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "setup: adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  for component in rustfmt clippy; do
    rustup component list --installed | grep -q "^$component" || rustup component add "$component"
  done
fi
