#!/usr/bin/env bash
# Project set-up: system packages, the cached Python virtualenv, and the editable install.
#
#   scripts/setup.sh           install whatever is missing (idempotent; run as root, or with
#                              passwordless sudo for the apt step); never prompts
#   scripts/setup.sh --check   print what is missing and exit 1 if anything is; installs nothing
#
# Environment:
#   HX_CACHE_DIR     cache root (default $HOME/.cache/hx). The virtualenv lives there, at
#                    venv-<12 hex of sha256(pyproject's [project] dependency lists + python
#                    version)>, so a second run on the same machine is fast; <repo>/.venv is a
#                    symlink to it. Delete a venv-* directory to rebuild it from scratch.
#   HX_PYTHON        interpreter the virtualenv is made from (default: python3 on PATH, >= 3.11)
#   HX_SKIP_SETUP=1  do nothing and exit 0 (used by tests that run `make test` / `.ci/run` on a
#                    throw-away copy of the repo whose .venv already exists). Ignored by --check.
#
# The virtualenv is shared by every clone on the machine that has the same dependency lists;
# the editable install (redone whenever the clone or its pyproject.toml differs from the last
# one) points the `toolchain` console script at the clone that ran set-up last. The Makefile puts its own clone first on
# PYTHONPATH, so `make demo` / `make bench` always run the code of the clone they are run in.
set -euo pipefail

START_NS=$(date +%s%N)
REPO_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)

MODE=install
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "setup: unknown argument '$1' (use --check or --help)" >&2; exit 2 ;;
esac
if [[ $# -gt 1 ]]; then echo "setup: too many arguments" >&2; exit 2; fi

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }
elapsed() { # seconds since $1 (ns), one decimal
  local now; now=$(date +%s%N)
  awk -v a="$1" -v b="$now" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'
}

if [[ $MODE == install && "${HX_SKIP_SETUP:-}" == 1 ]]; then
  log "skipped (HX_SKIP_SETUP=1)"
  exit 0
fi

# The project's system packages (the whole project needs them over its issues) ...
APT_PACKAGES=(
  espeak-ng sox libsndfile1 libportaudio2 jackd2
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu qemu-user
  gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm clang
  # libFuzzer + ASan/UBSan runtimes for clang 14 (Debian 12's clang): csrc/fuzz, tests/csrc/test_fuzz.py
  libclang-rt-14-dev
)
# ... and what this script, the Makefile and the host cffi build of csrc/ need themselves.
APT_PACKAGES+=(make gcc libc6-dev)

MISSING=()   # what --check reports

# --------------------------------------------------------------------------- python
PYTHON=${HX_PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  [[ -z ${HX_PYTHON:-} ]] || die "HX_PYTHON=$HX_PYTHON is not an executable"
  if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else die "no python3 found (set HX_PYTHON)"; fi
fi
# The base interpreter (not a virtualenv's, not a pyenv shim) and its version.
read -r PY_EXE PY_VERSION PY_OK < <("$PYTHON" - <<'EOF'
import sys
exe = getattr(sys, "_base_executable", None) or sys.executable
print(exe, "%d.%d.%d" % sys.version_info[:3], int(sys.version_info >= (3, 11)))
EOF
) || die "could not run $PYTHON"
[[ $PY_OK == 1 ]] || die "$PY_EXE is Python $PY_VERSION; the project needs >= 3.11 (set HX_PYTHON)"
if [[ $PY_EXE == /usr/bin/* ]]; then
  # Debian's interpreter: venv/ensurepip and the C headers (cffi builds) are separate packages.
  APT_PACKAGES+=(python3-venv python3-dev)
fi

# --------------------------------------------------------------------------- apt
pkg_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

missing_apt() {
  local p
  for p in "${APT_PACKAGES[@]}"; do pkg_installed "$p" || printf '%s\n' "$p"; done
}

APT_MISSING=()
if command -v dpkg-query >/dev/null 2>&1; then
  mapfile -t APT_MISSING < <(missing_apt)
else
  die "dpkg-query not found: this script supports Debian/Ubuntu (apt) machines only"
fi

if [[ $MODE == check ]]; then
  if ((${#APT_MISSING[@]})); then
    MISSING+=("apt packages: ${APT_MISSING[*]}")
  else
    log "apt ok (${#APT_PACKAGES[@]} packages)"
  fi
elif ((${#APT_MISSING[@]})); then
  SUDO=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      SUDO=(sudo -n)
    else
      die "missing apt packages (${APT_MISSING[*]}) and not root; run: sudo $0"
    fi
  fi
  t0=$(date +%s%N)
  log "apt: installing ${APT_MISSING[*]}"
  export DEBIAN_FRONTEND=noninteractive
  for p in "${APT_MISSING[@]}"; do
    if [[ $p == jackd2 ]]; then
      # jackd2's postinst asks whether to enable realtime priority: answer it up front.
      echo "jackd2 jackd/tweak_rt_limits boolean false" | "${SUDO[@]}" debconf-set-selections
    fi
  done
  apt_opts=(-o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  apt_log=$(mktemp "${TMPDIR:-/tmp}/hx-apt.XXXXXX.log")
  # One `apt-get update`, only because something is missing.
  if ! { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update -q \
         && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -q \
              --no-install-recommends "${APT_MISSING[@]}"; } </dev/null >"$apt_log" 2>&1; then
    echo "setup: apt-get failed; the end of $apt_log:" >&2
    tail -n 30 "$apt_log" >&2 || true
    die "apt install failed"
  fi
  rm -f -- "$apt_log"
  mapfile -t still < <(missing_apt)
  ((${#still[@]} == 0)) || die "apt packages still missing after install: ${still[*]}"
  log "apt ok (installed ${#APT_MISSING[@]} in $(elapsed "$t0")s)"
else
  log "apt ok (${#APT_PACKAGES[@]} packages present)"
fi

# --------------------------------------------------------------------------- venv
CACHE_DIR=${HX_CACHE_DIR:-$HOME/.cache/hx}
# Key: every [project] dependency list (base + each extra, in a canonical order) + the Python
# version. A change to either gives a new virtualenv; the old one stays until removed by hand.
read -r VENV_KEY < <(PY_VERSION="$PY_VERSION" "$PYTHON" - "$REPO_ROOT/pyproject.toml" <<'EOF'
import hashlib, json, os, sys, tomllib
with open(sys.argv[1], "rb") as fh:
    project = tomllib.load(fh)["project"]
key = {
    "no-deps": tomllib.load(open(sys.argv[1], "rb")).get("tool", {}).get("hx", {}).get("no-deps", []),
    "dependencies": project.get("dependencies", []),
    "optional-dependencies": project.get("optional-dependencies", {}),
    "python": os.environ["PY_VERSION"],
}
print(hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12])
EOF
) || die "could not read the [project] tables of $REPO_ROOT/pyproject.toml"
VENV="$CACHE_DIR/venv-$VENV_KEY"
VPY="$VENV/bin/python"
MARKER="$VENV/.hx-deps-installed"
LINK="$REPO_ROOT/.venv"

venv_usable() { [[ -x $VPY ]] && "$VPY" -c 'import sys' >/dev/null 2>&1; }

# Where `import toolchain` resolves outside the repo (i.e. through the editable install).
toolchain_origin() {
  (cd / && "$VPY" -c 'import importlib.util as u; s = u.find_spec("toolchain"); print(s.origin if s else "")' 2>/dev/null) || true
}

if [[ $MODE == check ]]; then
  if ! venv_usable; then
    MISSING+=("virtualenv $VENV (Python $PY_VERSION)")
  elif [[ ! -f $MARKER ]]; then
    MISSING+=("dependencies in $VENV (no completed install)")
  else
    log "venv ok ($VENV)"
    origin=$(toolchain_origin)
    if [[ ! -x $VENV/bin/toolchain || -z $origin ]]; then
      MISSING+=("editable install of the project in $VENV (the toolchain command)")
    elif [[ $origin != "$REPO_ROOT/toolchain/__init__.py" ]]; then
      # The venv is shared by the clones on this machine: another one ran set-up last. Not a
      # failure (make targets run set-up first, and put their own clone first on PYTHONPATH).
      log "note: .venv/bin/toolchain runs ${origin%/toolchain/__init__.py} (set-up re-points it here)"
    else
      log "toolchain ok (editable, $REPO_ROOT)"
    fi
  fi
  if [[ ! -L $LINK || "$(readlink -- "$LINK")" != "$VENV" ]]; then
    MISSING+=(".venv -> $VENV")
  fi
  if ((${#MISSING[@]})); then
    for m in "${MISSING[@]}"; do echo "setup: missing: $m"; done
    exit 1
  fi
  log "all present"
  exit 0
fi

mkdir -p "$CACHE_DIR"
# One set-up at a time per virtualenv (several clones / make targets may start it at once).
exec 9>"$VENV.lock"
if ! flock -n 9; then
  log "venv: waiting for another set-up run to finish with $VENV"
  flock 9
fi

PIP_OPTS=(--no-input --disable-pip-version-check --progress-bar off)
[[ -d /opt/wheels ]] && PIP_OPTS+=(--find-links /opt/wheels)

if [[ -f $MARKER ]] && venv_usable; then
  log "venv ok (cached) $VENV"
else
  t0=$(date +%s%N)
  if [[ -e $VENV ]] && ! venv_usable; then
    log "venv: $VENV is broken (its interpreter does not run); recreating it"
    rm -rf -- "$VENV"
  fi
  if [[ ! -e $VENV ]]; then
    log "venv: creating $VENV (Python $PY_VERSION, $PY_EXE)"
    "$PY_EXE" -m venv "$VENV" || { rm -rf -- "$VENV"; die "could not create the virtualenv with $PY_EXE -m venv"; }
  fi
  # Every [project] dependency list: base + all extras ([dev] is the host toolchain + tests).
  mapfile -t DEPS < <("$VPY" - "$REPO_ROOT/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as fh:
    project = tomllib.load(fh)["project"]
deps = list(project.get("dependencies", []))
for extra in sorted(project.get("optional-dependencies", {})):
    deps += project["optional-dependencies"][extra]
seen = set()
for d in deps:
    if d not in seen:
        seen.add(d)
        print(d)
EOF
)
  ((${#DEPS[@]})) || die "could not read the dependency lists of $REPO_ROOT/pyproject.toml"
  log "venv: installing ${#DEPS[@]} dependencies (cold: several minutes; log $VENV/hx-pip.log)"
  if ! "$VPY" -m pip install -qq "${PIP_OPTS[@]}" --log "$VENV/hx-pip.log" "${DEPS[@]}" 'setuptools>=68' </dev/null; then
    echo "setup: pip failed; the end of $VENV/hx-pip.log:" >&2
    tail -n 40 "$VENV/hx-pip.log" >&2 || true
    die "dependency install failed (run again to retry; the virtualenv is kept)"
  fi
  # Packages whose own dependency lists we must not follow ([tool.hx] no-deps in pyproject.toml).
  mapfile -t NODEPS < <("$VPY" -c 'import sys, tomllib; [print(d) for d in tomllib.load(open(sys.argv[1], "rb")).get("tool", {}).get("hx", {}).get("no-deps", [])]' "$REPO_ROOT/pyproject.toml")
  if ((${#NODEPS[@]})); then
    log "venv: installing ${NODEPS[*]} without their dependency lists"
    "$VPY" -m pip install -qq "${PIP_OPTS[@]}" --log "$VENV/hx-pip.log" --no-deps "${NODEPS[@]}" </dev/null \
      || die "install of ${NODEPS[*]} failed (see $VENV/hx-pip.log)"
  fi
  printf '%s\n' "${DEPS[@]}" "${NODEPS[@]}" >"$MARKER"
  log "venv ok (installed in $(elapsed "$t0")s) $VENV"
fi

# setuptools for the no-build-isolation editable install (Python >= 3.12 venvs come without).
if ! "$VPY" -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 68)' 2>/dev/null; then
  log "venv: installing setuptools>=68"
  "$VPY" -m pip install -qq "${PIP_OPTS[@]}" 'setuptools>=68' </dev/null
fi

# The project itself, editable and without dependencies, so `toolchain` runs this clone. It is
# redone unless the venv already holds an editable install of this clone made from this very
# pyproject.toml (then it would change nothing, and pip takes seconds to find that out).
EDITABLE_MARKER="$VENV/.hx-editable"
editable_id="$REPO_ROOT $(sha256sum "$REPO_ROOT/pyproject.toml" | cut -c1-64)"
if [[ -x $VENV/bin/toolchain && -f $EDITABLE_MARKER && "$(cat -- "$EDITABLE_MARKER")" == "$editable_id" \
      && "$(toolchain_origin)" == "$REPO_ROOT/toolchain/__init__.py" ]]; then
  log "toolchain ok (editable install of $REPO_ROOT, unchanged)"
else
  t0=$(date +%s%N)
  rm -f -- "$EDITABLE_MARKER"
  (cd "$REPO_ROOT" && "$VPY" -m pip install -qq "${PIP_OPTS[@]}" --no-deps --no-build-isolation -e . </dev/null) \
    || die "editable install of $REPO_ROOT failed"
  printf '%s\n' "$editable_id" >"$EDITABLE_MARKER"
  log "toolchain ok (editable install of $REPO_ROOT in $(elapsed "$t0")s)"
fi

# <repo>/.venv -> the cached virtualenv (a stale link is replaced; a real directory is not).
if [[ -L $LINK ]]; then
  [[ "$(readlink -- "$LINK")" == "$VENV" ]] || ln -sfn -- "$VENV" "$LINK"
elif [[ -e $LINK ]]; then
  die "$LINK exists and is not a symlink; move it away (set-up links .venv -> $VENV)"
else
  ln -s -- "$VENV" "$LINK"
fi
log ".venv -> $VENV"
log "done in $(elapsed "$START_NS")s"
