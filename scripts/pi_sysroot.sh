#!/usr/bin/env bash
# An emulated Raspberry Pi Python for the runtime tests (`pytest -k emulated`): Debian bookworm's
# arm64 python3.11 (what Raspberry Pi OS 12 ships), run with qemu-aarch64 -cpu cortex-a72, plus
# the aarch64 wheels a board installs with `pip install .[runtime]` (numpy, cffi, ai-edge-litert).
#
#   bash scripts/pi_sysroot.sh            build what is missing (idempotent, cached), then print
#                                         KEY=VALUE lines: HX_PI_SYSROOT, HX_PI_SITE, HX_PI_PYTHON,
#                                         HX_PI_QEMU, HX_PI_CPU
#   bash scripts/pi_sysroot.sh --check    exit 0 if everything is cached and runs, 1 if not
#
# Cache: $HX_CACHE_DIR/pi-sysroot (default ~/.cache/hx/pi-sysroot):
#   sysroot/            the arm64 packages unpacked with `dpkg -x` (no chroot, no binfmt needed)
#   site-<key>/         wheels installed with `pip install --platform ... --target` (key: versions)
# The packages are fetched with `apt-get download <pkg>:arm64`; that needs the arm64 package
# lists, so the script adds the arm64 architecture for the download only (`dpkg
# --add-architecture arm64`, `apt-get update`) and removes it again afterwards (also on failure),
# unless the machine had it already. Needs root (or sudo -n) for that step; everything after it
# runs as the calling user. A cold build takes a minute or two (downloads ~60 MB), a warm one
# well under a second.
#
# Two traps this script closes: LiteRT's CPU detection reads /proc/cpuinfo and crashes on an x86
# one (qemu passes the host's through), so the sysroot carries a Raspberry Pi 4 cpuinfo at
# proc/cpuinfo (CPU part 0xd08) that qemu -L serves instead; and qemu's default -cpu max makes
# XNNPACK pick kernels that compute wrong values, so HX_PI_CPU is cortex-a72.
#
# Wheel versions are the host virtualenv's (HX_PI_VERSIONS_FROM=<python>, default .venv/bin/python)
# so the emulated board computes with the same numpy / cffi / LiteRT as the host.
set -euo pipefail

REPO_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
CACHE_DIR=${HX_CACHE_DIR:-$HOME/.cache/hx}
ROOT="$CACHE_DIR/pi-sysroot"
SYSROOT="$ROOT/sysroot"
PYVER=3.11
CPU=${HX_PI_CPU:-cortex-a72}
MODE=build
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "pi_sysroot: unknown argument '$1' (use --check or --help)" >&2; exit 2 ;;
esac

log() { printf 'pi_sysroot: %s\n' "$*" >&2; }
die() { printf 'pi_sysroot: ERROR: %s\n' "$*" >&2; exit 1; }

# The arm64 packages: the interpreter, its standard library and the shared libraries that the
# interpreter, its extension modules and the wheels (LiteRT: libstdc++) load.
PACKAGES=(
  python3.11 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libpython3.11-dev libpython3.11
  libc6 libgcc-s1 libstdc++6 libffi8 libssl3 zlib1g libexpat1 libbz2-1.0 liblzma5 libsqlite3-0
  libuuid1 libncursesw6 libtinfo6 libreadline8 libdb5.3 libnsl2 libtirpc3 libcrypt1
  libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1
)
PKG_KEY=$(printf '%s\n' "${PACKAGES[@]}" | sha256sum | cut -c1-12)
STAMP="$SYSROOT/.hx-sysroot-$PKG_KEY"

QEMU=$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)
[[ -n $QEMU ]] || { [[ $MODE == check ]] && exit 1; die "qemu-aarch64 not found (apt install qemu-user)"; }

# Versions of the wheels: the host's, so both sides compute with the same code.
VPY=${HX_PI_VERSIONS_FROM:-$REPO_ROOT/.venv/bin/python}
[[ -x $VPY ]] || VPY=python3
read -r V_NUMPY V_CFFI V_LITERT < <("$VPY" - <<'EOF'
from importlib.metadata import version, PackageNotFoundError
def v(name, default):
    try:
        return version(name)
    except PackageNotFoundError:
        return default
print(v("numpy", "2.2.6"), v("cffi", "1.17.1"), v("ai-edge-litert", "2.0.2"))
EOF
) || die "could not read the wheel versions from $VPY"
SITE_KEY=$(printf 'numpy==%s cffi==%s ai-edge-litert==%s py%s' "$V_NUMPY" "$V_CFFI" "$V_LITERT" "$PYVER" | sha256sum | cut -c1-12)
SITE="$ROOT/site-$SITE_KEY"
PY="$SYSROOT/usr/bin/python$PYVER"

emit() {
  printf 'HX_PI_SYSROOT=%s\nHX_PI_SITE=%s\nHX_PI_PYTHON=%s\nHX_PI_QEMU=%s\nHX_PI_CPU=%s\n' \
    "$SYSROOT" "$SITE" "$PY" "$QEMU" "$CPU"
}

smoke() {  # the emulated interpreter imports what the runtime needs
  PYTHONPATH="$SITE" PYTHONNOUSERSITE=1 timeout 300 "$QEMU" -cpu "$CPU" -L "$SYSROOT" "$PY" -c \
    'import numpy, cffi, _cffi_backend, ai_edge_litert.interpreter, platform; assert platform.machine() == "aarch64"' \
    >/dev/null 2>&1
}

if [[ $MODE == check ]]; then
  [[ -f $STAMP && -f $SITE/.hx-complete ]] && smoke && { emit; exit 0; }
  exit 1
fi

mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
if ! flock -n 9; then
  log "waiting for another build of $ROOT"
  flock 9
fi

# ------------------------------------------------------------------------------ the sysroot
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo -n "$@"
  else die "need root (or sudo -n) to add the arm64 package lists for the download"; fi
}

ADDED_ARCH=0
restore_arch() {
  if [[ $ADDED_ARCH == 1 ]]; then
    ADDED_ARCH=0
    log "removing the arm64 architecture again"
    as_root dpkg --remove-architecture arm64 || log "warning: dpkg --remove-architecture arm64 failed"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null 2>&1 \
      || log "warning: apt-get update after removing arm64 failed"
  fi
}

if [[ ! -f $STAMP ]]; then
  t0=$(date +%s)
  command -v dpkg >/dev/null && command -v apt-get >/dev/null || die "needs a Debian/Ubuntu machine (dpkg, apt-get)"
  WORK=$(mktemp -d "$ROOT/.build.XXXXXX")
  trap 'restore_arch; rm -rf -- "$WORK"' EXIT
  # One arm64 download at a time on this machine (two caches must not add/remove the arch under
  # each other's feet).
  exec 8>"${TMPDIR:-/tmp}/hx-pi-sysroot-apt.lock"
  flock -w 1200 8 || die "another pi_sysroot.sh holds the apt step for over 20 minutes"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    log "adding the arm64 architecture for the download (removed again afterwards)"
    as_root dpkg --add-architecture arm64
    ADDED_ARCH=1
  fi
  log "apt-get update (arm64 lists)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null \
    || die "apt-get update failed"
  log "downloading ${#PACKAGES[@]} arm64 packages"
  mkdir -p "$WORK/debs"
  args=()
  for p in "${PACKAGES[@]}"; do args+=("$p:arm64"); done
  # apt-get download writes into the current directory; run it as the owner of $WORK.
  (cd "$WORK/debs" && apt-get download -qq "${args[@]}") >/dev/null 2>"$WORK/download.log" \
    || { grep -v '^W: ' "$WORK/download.log" >&2; die "apt-get download failed"; }
  restore_arch
  flock -u 8
  log "unpacking"
  mkdir -p "$WORK/root"
  for deb in "$WORK"/debs/*.deb; do dpkg -x "$deb" "$WORK/root"; done
  # Absolute symlinks would resolve on the host under qemu -L: make them relative to the sysroot.
  while IFS= read -r -d '' link; do
    target=$(readlink -- "$link")
    if [[ $target == /* ]]; then
      rel=$(realpath -m --relative-to="$(dirname -- "$link")" "$WORK/root$target")
      ln -sfn -- "$rel" "$link"
    fi
  done < <(find "$WORK/root" -type l -print0)
  # Merged /usr as on the device: /lib and /usr/lib must both resolve.
  for d in lib bin sbin; do
    if [[ -d $WORK/root/$d && ! -L $WORK/root/$d && -d $WORK/root/usr/$d ]]; then
      cp -a "$WORK/root/$d/." "$WORK/root/usr/$d/" && rm -rf -- "${WORK:?}/root/$d" && ln -s "usr/$d" "$WORK/root/$d"
    elif [[ ! -e $WORK/root/$d && -d $WORK/root/usr/$d ]]; then
      ln -s "usr/$d" "$WORK/root/$d"
    fi
  done
  [[ -x $WORK/root/usr/bin/python$PYVER ]] || die "the arm64 python$PYVER binary is missing from the packages"
  # A Raspberry Pi 4's /proc/cpuinfo (BCM2711, 4x Cortex-A72 = CPU part 0xd08), served by qemu -L.
  mkdir -p "$WORK/root/proc"
  {
    for i in 0 1 2 3; do
      printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
      printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
    done
    printf 'Hardware\t: BCM2835\nRevision\t: c03114\nSerial\t\t: 10000000deadbeef\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n'
  } >"$WORK/root/proc/cpuinfo"
  touch "$WORK/root/.hx-sysroot-$PKG_KEY"
  rm -rf -- "$SYSROOT.old"
  [[ -e $SYSROOT ]] && mv -- "$SYSROOT" "$SYSROOT.old"
  mv -- "$WORK/root" "$SYSROOT"
  rm -rf -- "$SYSROOT.old" "$WORK"
  trap - EXIT
  log "sysroot ready in $(( $(date +%s) - t0 )) s: $SYSROOT ($(du -sh "$SYSROOT" | cut -f1))"
fi

# ------------------------------------------------------------------------------- the wheels
if [[ ! -f $SITE/.hx-complete ]]; then
  t0=$(date +%s)
  log "installing aarch64 wheels: numpy==$V_NUMPY cffi==$V_CFFI ai-edge-litert==$V_LITERT"
  tmp=$(mktemp -d "$ROOT/.site.XXXXXX")
  trap 'rm -rf -- "$tmp"' EXIT
  # Every manylinux tag a bookworm board (glibc 2.36) accepts: pip takes the list literally.
  PLATFORMS=(--platform manylinux2014_aarch64)
  for v in $(seq 17 36); do PLATFORMS+=(--platform "manylinux_2_${v}_aarch64"); done
  pip_py=$VPY
  "$pip_py" -m pip --version >/dev/null 2>&1 || pip_py=python3
  if ! "$pip_py" -m pip install -q --no-input --disable-pip-version-check --no-compile \
        --only-binary=:all: "${PLATFORMS[@]}" --python-version "$PYVER" --implementation cp \
        --target "$tmp" "numpy==$V_NUMPY" "cffi==$V_CFFI" "ai-edge-litert==$V_LITERT" </dev/null >"$ROOT/pip.log" 2>&1; then
    tail -n 20 "$ROOT/pip.log" >&2
    die "pip could not install the aarch64 wheels (log: $ROOT/pip.log)"
  fi
  touch "$tmp/.hx-complete"
  rm -rf -- "$SITE"
  mv -- "$tmp" "$SITE"
  trap - EXIT
  log "wheels ready in $(( $(date +%s) - t0 )) s: $SITE ($(du -sh "$SITE" | cut -f1))"
fi

smoke || die "the emulated python does not import numpy / cffi / ai_edge_litert (try: rm -rf $ROOT)"
emit
