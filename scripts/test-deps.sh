#!/usr/bin/env bash
# `make test` runs this before pytest: the machine tools the tests drive, installed only when
# missing. Python tools (pytest, selenium, ruff, kubectl with kustomize, ...) come from the
# locks into .venv; this covers the rest:
#   - Debian's chromium and chromium-driver at /usr/bin (browser tests), with apt-get;
#   - promtool and the Prometheus server from Debian's prometheus package, unpacked with
#     `dpkg -x` into .tools/prometheus/ (tests/tools.py finds them there). Nothing of it is
#     installed system-wide, so the package's web UI dependencies are not needed: the server's
#     HTTP API works without them.
#   - amtool from Debian's prometheus-alertmanager package, the same way, into .tools/alertmanager/
#     (the Alertmanager routing tests).
# Where a tool cannot be installed (no apt-get, not root and no sudo), it stops before the tests
# with the list of what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

PROMETHEUS_DIR=.tools/prometheus
ALERTMANAGER_DIR=.tools/alertmanager
apt_packages=()
[ -x /usr/bin/chromium ] || apt_packages+=(chromium)
[ -x /usr/bin/chromedriver ] || apt_packages+=(chromium-driver)
need_prometheus=false
[ -x "$PROMETHEUS_DIR/usr/bin/promtool" ] && [ -x "$PROMETHEUS_DIR/usr/bin/prometheus" ] || need_prometheus=true
need_amtool=false
[ -x "$ALERTMANAGER_DIR/usr/bin/amtool" ] || need_amtool=true

if [ ${#apt_packages[@]} -eq 0 ] && [ "$need_prometheus" = false ] && [ "$need_amtool" = false ]; then
  exit 0
fi

missing_message() {
  {
    echo "make test needs tools this script cannot install here ($1):"
    [ ${#apt_packages[@]} -eq 0 ] || echo "  - Debian packages: ${apt_packages[*]}   (apt-get install --no-install-recommends ${apt_packages[*]})"
    [ "$need_prometheus" = false ] \
      || echo "  - promtool and prometheus (Debian package prometheus, unpacked into $PROMETHEUS_DIR/ by this script; or put both binaries in $PROMETHEUS_DIR/usr/bin/)"
    [ "$need_amtool" = false ] \
      || echo "  - amtool (Debian package prometheus-alertmanager, unpacked into $ALERTMANAGER_DIR/ by this script; or put it in $ALERTMANAGER_DIR/usr/bin/)"
    echo "Install them (or run this script as root: bash scripts/test-deps.sh), then run make test again."
  } >&2
  exit 1
}

command -v apt-get >/dev/null && command -v dpkg >/dev/null || missing_message "no apt-get/dpkg on this machine"
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  as_root=()
  # `apt-get download` and `dpkg -x` need no root; installing chromium does.
  [ ${#apt_packages[@]} -eq 0 ] || missing_message "not root and no password-less sudo"
fi

updated=false
apt_update() {
  if [ "$updated" = false ]; then
    "${as_root[@]}" apt-get update -q
    updated=true
  fi
}

if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "Installing ${apt_packages[*]} with apt-get" >&2
  apt_update
  "${as_root[@]}" apt-get install -y -q --no-install-recommends "${apt_packages[@]}"
fi

# Unpacks a Debian package's files into a directory (no root needed: `apt-get download`, `dpkg -x`).
unpack() {
  local package=$1 dir=$2 download
  echo "Unpacking $package into $dir/" >&2
  download=$(mktemp -d)
  # The package lists may be missing on a fresh image: refresh them once, as root, and retry.
  if ! (cd "$download" && apt-get download -q "$package"); then
    if [ "$(id -u)" -ne 0 ] && [ ${#as_root[@]} -eq 0 ]; then
      missing_message "apt-get download $package failed and refreshing the package lists needs root"
    fi
    apt_update
    (cd "$download" && apt-get download -q "$package")
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  dpkg -x "$download/${package}"_*.deb "$dir"
  rm -rf "$download"
}

if [ "$need_prometheus" = true ]; then
  unpack prometheus "$PROMETHEUS_DIR"
  "$PROMETHEUS_DIR/usr/bin/promtool" --version >/dev/null
  "$PROMETHEUS_DIR/usr/bin/prometheus" --version >/dev/null
fi
if [ "$need_amtool" = true ]; then
  unpack prometheus-alertmanager "$ALERTMANAGER_DIR"
  "$ALERTMANAGER_DIR/usr/bin/amtool" --version >/dev/null
fi
