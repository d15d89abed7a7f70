# Sourced by scripts/test and scripts/demo: make sure .venv/ is a working virtual
# environment (Debian's python3 refuses `pip install` outside one, PEP 668), installing
# python3-venv with apt-get when `python3 -m venv` fails -- as root directly, otherwise
# through sudo when it is there.  Sets PY to the environment's python.
PY=.venv/bin/python

as_root() {
  if [[ ${EUID:-$(id -u)} -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "$0: needs root for: $*" >&2
    return 1
  fi
}

ensure_venv() {
  if "$PY" -c 'import sys; assert sys.prefix != sys.base_prefix' 2>/dev/null; then
    return 0
  fi
  rm -rf .venv
  if python3 -m venv .venv; then
    return 0
  fi
  rm -rf .venv  # a failed attempt leaves a venv without pip behind
  if ! command -v apt-get >/dev/null; then
    echo "$0: python3 -m venv failed: install python3's venv module" >&2
    return 1
  fi
  echo "$0: python3 -m venv failed; installing python3-venv" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends --no-upgrade python3-venv
  python3 -m venv .venv
}
