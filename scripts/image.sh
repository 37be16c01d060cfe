#!/usr/bin/env bash
# `make image` (build) and `make image-test` (build, then run it as the cluster does: tests/image/).
#
# Builds deploy/Dockerfile with the legacy builder (`DOCKER_BUILDKIT=0`: BuildKit would pull its
# frontend image from a registry) and `--network host` (the build stage's apt-get reaches Debian as
# this machine does). Where no container daemon answers, Debian's docker.io is installed when
# missing (apt, as root) and a private dockerd is started for the length of the command, with its
# data in $CACHE/docker (layers and the base survive between runs and clones), then stopped.
#
# BASE_IMAGE: the image's base. Unset, a base made here from Debian packages stands in for
# python:3.11-slim (no image registry needed): `debootstrap --variant=minbase` of Debian trixie
# with python3 (3.13), python3-venv and ca-certificates, imported as $LOCAL_BASE; made once.
#
# Wheels: pip in the build installs from this machine's wheel cache ($CACHE/wheels-<python>),
# filled on the host by `pip download` for the base's Python and glibc, and served to the build
# over 127.0.0.1 (PIP_NO_INDEX, PIP_FIND_LINKS build arguments): no index is asked during the build.
#
# LOCAL_MODEL (default false here): true bundles local/all-MiniLM-L6-v2 with torch's CPU build and its
# OpenVINO exports, about 1.7 GB more; false needs collections on a provider model or local/hash-<dims>.
# The CPU build comes from the PyTorch CPU index where it answers, else from a wheel pip already finds
# (a find-links directory: here /opt/wheels holds one, for Python 3.11 only). So with LOCAL_MODEL=true
# the base made here runs this machine's own Python 3.11: its install copied into /usr/local of a
# Debian base of this machine's release, as python:3.11-slim is CPython in /usr/local on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

IMAGE=${IMAGE:-embedportal:dev}
LOCAL_MODEL=${LOCAL_MODEL:-false}
CACHE=${EMBEDPORTAL_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/embedportal-image}
SUITE=trixie
LOCAL_BASE=embedportal-base:$SUITE
if [ "$LOCAL_MODEL" = true ]; then
  SUITE=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
  LOCAL_BASE=embedportal-base:$SUITE-host-python
fi
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
mkdir -p "$CACHE"

fail() { echo "make image: $*" >&2; exit 1; }

# Root for apt, dockerd and debootstrap: ourselves, or password-less sudo.
if [ "$(id -u)" -eq 0 ]; then as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then as_root=(sudo -n)
else as_root=(fail "needs root (or password-less sudo) for:"); fi

apt_install() {
  command -v apt-get >/dev/null || fail "no apt-get here: install $* (Debian package names), then run again"
  echo "Installing $* with apt-get" >&2
  "${as_root[@]}" apt-get update -q >/dev/null
  "${as_root[@]}" apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

daemon_pid=
bridge_made=false
server_pid=
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  if [ -n "$daemon_pid" ]; then
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
    # What the daemon leaves behind: the default bridge it made (containers and networks are gone
    # with it) and its mount of the host's network namespace.
    [ "$bridge_made" = false ] || "${as_root[@]}" ip link delete docker0 2>/dev/null || true
    ! mountpoint -q "$CACHE/exec/netns/default" || "${as_root[@]}" umount "$CACHE/exec/netns/default"
  fi
}
trap cleanup EXIT

start_daemon() {
  if docker info >/dev/null 2>&1; then return; fi
  command -v dockerd >/dev/null || apt_install docker.io
  command -v docker >/dev/null || fail "docker.io is installed but no docker client is on PATH"
  ip link show docker0 >/dev/null 2>&1 || bridge_made=true
  export DOCKER_HOST=unix://$CACHE/docker.sock
  # No forwarding or masquerading: containers reach each other on their bridge, never the outside.
  "${as_root[@]}" dockerd --data-root "$CACHE/docker" --exec-root "$CACHE/exec" --pidfile "$CACHE/docker.pid" \
    --host "$DOCKER_HOST" --ip-forward=false --ip-masq=false >"$CACHE/dockerd.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && return
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.5
  done
  tail -20 "$CACHE/dockerd.log" >&2
  fail "dockerd did not start (log above, $CACHE/dockerd.log)"
}

# The libraries a CPython build links its modules to (ssl, sqlite3, ctypes, bz2, lzma, readline, ...).
CPYTHON_LIBS=libssl3,libsqlite3-0,libffi8,libbz2-1.0,liblzma5,zlib1g,libreadline8,libncursesw6,libuuid1,libgdbm6

make_base() {
  docker image inspect "$LOCAL_BASE" >/dev/null 2>&1 && return
  command -v debootstrap >/dev/null || apt_install debootstrap
  local rootfs packages=python3,python3-venv,ca-certificates host_prefix=
  if [ "$LOCAL_MODEL" = true ]; then
    host_prefix=$("$HOST_PYTHON" -c 'import sys; v = sys.version_info
print(sys.base_prefix if (v.major, v.minor) == (3, 11) and v.micro >= 5 else "")')
    [ -n "$SUITE" ] && [ -n "$host_prefix" ] \
      || fail "LOCAL_MODEL=true makes its base from this Debian machine's Python 3.11.5+; here set BASE_IMAGE=python:3.11-slim (with the PyTorch CPU index reachable)"
    packages=ca-certificates,$CPYTHON_LIBS
  fi
  rootfs=$(mktemp -d)
  echo "Making $LOCAL_BASE with debootstrap (about a minute)" >&2
  "${as_root[@]}" debootstrap --variant=minbase --include="$packages" \
    "$SUITE" "$rootfs" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; fail "debootstrap failed"; }
  if [ -n "$host_prefix" ]; then
    # The interpreter, its standard library and libpython, without the host's installed packages or
    # the test suite; ldconfig finds libpython in /usr/local/lib (its rpath names the host's prefix).
    "${as_root[@]}" tar -C "$host_prefix" -c --exclude='lib/python3.11/site-packages/*' \
      --exclude=lib/python3.11/test --exclude='__pycache__' bin/python3 bin/python3.11 lib | "${as_root[@]}" tar -C "$rootfs/usr/local" -x
    "${as_root[@]}" chroot "$rootfs" sh -c 'ldconfig && ln -sf python3 /usr/local/bin/python && python3 -m venv /tmp/v && rm -rf /tmp/v' \
      || fail "the copied Python does not run in the base"
  else
    # As python:3.11-slim: `python` is the interpreter; no package lists or downloaded packages.
    "${as_root[@]}" ln -sf python3 "$rootfs/usr/bin/python"
  fi
  "${as_root[@]}" sh -c "rm -rf '$rootfs'/var/lib/apt/lists/* '$rootfs'/var/cache/apt/*.bin '$rootfs'/var/cache/apt/archives/*.deb"
  "${as_root[@]}" tar --numeric-owner -C "$rootfs" -c . | docker import -c 'CMD ["python3"]' - "$LOCAL_BASE" >/dev/null
  "${as_root[@]}" rm -rf "$rootfs"
}

# The Dockerfile's own LOCAL_MODEL=false filter (one list, tests/deploy/test_image.py checks it).
image_requirements() {
  if [ "$LOCAL_MODEL" = true ]; then
    cat requirements.lock
  else
    grep -v -i -E "$(grep -o "grep -v -i -E '[^']*'" deploy/Dockerfile | sed "s/^grep -v -i -E '//; s/'\$//")" \
      requirements.lock
  fi
  # The project's build backend (`pip install -e .` builds in isolation).
  grep -i '^setuptools==' requirements.lock
}

fetch_wheels() {
  local facts python micro glibc platforms=() index=() list stamp
  facts=$(docker run --rm --network none "$BASE_IMAGE" python3 -c \
    'import platform, sys; print("%d.%d" % sys.version_info[:2], sys.version_info[2], platform.libc_ver()[1].split(".")[1])')
  read -r python micro glibc <<<"$facts"
  wheels=$CACHE/wheels-$python
  list=$(image_requirements | sort -u)
  stamp=$wheels/.fetched-$LOCAL_MODEL-$(printf '%s' "$list" | sha256sum | cut -c1-16)
  # The benchmarks' corpus is Django's source distribution (testing/corpus.py), which the build's
  # `fetch_corpus` asks pip for: served from here too.
  local django
  django=$(sed -n 's/^DJANGO_VERSION = "\(.*\)"$/\1/p' testing/corpus.py)
  [ -f "$wheels/django-$django.tar.gz" ] || "$HOST_PYTHON" -m pip download -q --disable-pip-version-check \
    --no-deps --no-binary django "django==$django" -d "$wheels"
  [ -f "$stamp" ] && return
  # pip download names each platform tag: every manylinux this glibc runs.
  for minor in $(seq 5 "$glibc"); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
  platforms+=(--platform manylinux1_x86_64 --platform manylinux2010_x86_64 --platform manylinux2014_x86_64)
  if [ "$LOCAL_MODEL" = true ] && "$HOST_PYTHON" -c "import urllib.request as u; u.urlopen('$TORCH_CPU_INDEX/torch/', timeout=5)" 2>/dev/null; then
    index=(--extra-index-url "$TORCH_CPU_INDEX")
  fi
  echo "Downloading the image's wheels for Python $python into $wheels" >&2
  mkdir -p "$wheels"
  printf '%s\n' "$list" >"$wheels/requirements.txt"
  "$HOST_PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --implementation cp --python-version "$python.$micro" "${platforms[@]}" \
    "${index[@]}" -d "$wheels" -r "$wheels/requirements.txt"
  if [ "$LOCAL_MODEL" = true ] && ! ls "$wheels"/torch-*+cpu-*.whl >/dev/null 2>&1; then
    rm -f "$wheels"/torch-*.whl  # PyPI's build of torch is CUDA's, several GB
    fail "no CPU build of torch for Python $python: neither the PyTorch CPU index nor pip's find-links serve one"
  fi
  touch "$stamp"
}

build() {
  [ -d .git ] || fail ".git is not a directory (a git worktree?): the build copies the history for the docs; build from a clone"
  start_daemon
  HOST_PYTHON=${HOST_PYTHON:-$(command -v .venv/bin/python || command -v python3)}
  if [ -z "${BASE_IMAGE:-}" ]; then
    make_base
    BASE_IMAGE=$LOCAL_BASE
  fi
  fetch_wheels
  # A fixed address: the build arguments are part of the layer cache's key.
  local port=${EMBEDPORTAL_WHEEL_PORT:-38619}
  "$HOST_PYTHON" -m http.server --bind 127.0.0.1 --directory "$wheels" "$port" >"$CACHE/wheels.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 50); do
    "$HOST_PYTHON" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/requirements.txt')" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || fail "cannot serve the wheels on 127.0.0.1:$port ($CACHE/wheels.log; EMBEDPORTAL_WHEEL_PORT=... picks another)"
    sleep 0.2
  done
  DOCKER_BUILDKIT=0 docker build --network host -f deploy/Dockerfile -t "$IMAGE" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg LOCAL_MODEL="$LOCAL_MODEL" \
    --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS="http://127.0.0.1:$port/" .
  kill "$server_pid"
  server_pid=
  echo "Built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}'))" >&2
}

case "${1:-build}" in
  build) build ;;
  test)
    build
    EMBEDPORTAL_IMAGE=$IMAGE EMBEDPORTAL_IMAGE_VERSION=$(git rev-parse HEAD) \
      "$HOST_PYTHON" -m pytest tests/image -m image -p no:cacheprovider -q
    ;;
  *) fail "usage: scripts/image.sh [build|test]" ;;
esac
