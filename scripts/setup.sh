#!/usr/bin/env bash
# Set up jumprig in .venv (Python 3.11). With --dev, also the test tools and the Debian packages
# the test suite uses. Safe to run again: it only installs what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
for arg in "$@"; do
    case "$arg" in
        --dev) dev=1 ;;
        *) echo "usage: scripts/setup.sh [--dev]" >&2; exit 2 ;;
    esac
done

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
    local missing=()
    for package in "$@"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

python=""
for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        python="$candidate"
        break
    fi
done
if [ -z "$python" ]; then
    echo "setup: jumprig needs Python 3.11 (python3.11 on the PATH)" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    if ! "$python" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        apt_install python3-venv python3.11-venv
        "$python" -m venv .venv
    fi
fi

if [ "$dev" -eq 1 ]; then
    apt_install chromium
fi

stamp=.venv/.jumprig-installed
wanted="$(cat pyproject.toml) dev=$dev"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    echo "setup: installing Python packages into .venv (a few minutes the first time)"
    .venv/bin/python -m pip install -q --disable-pip-version-check -U pip
    if [ "$dev" -eq 1 ]; then
        .venv/bin/python -m pip install -q -e ".[dev]"
        # aniposelib (the anipose check in the tests) declares opencv-contrib-python, which must
        # not sit beside opencv-python-headless: install it alone, its real needs are in [dev].
        .venv/bin/python -m pip install -q --no-deps aniposelib==0.7.2
    else
        .venv/bin/python -m pip install -q -e .
    fi
    # sleap-io (which movement needs) installs its own test suite as a top-level package
    # "tests", which would hide this project's tests/ folder: remove it.
    site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    if grep -q '^tests/__init__.py,' "$site"/sleap_io-*.dist-info/RECORD 2>/dev/null; then
        rm -rf "$site/tests"
    fi
    printf '%s' "$wanted" > "$stamp"
fi
echo "setup: ready (.venv)"
