#!/usr/bin/env bash
# Debian libraries napari needs (OpenGL, Qt xcb platform) and Xvfb for headless GUI tests.
# Installs them when run as root with apt-get; otherwise lists what is missing.
set -uo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "napari needs these Debian packages; please install them:" >&2
  echo "  sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
