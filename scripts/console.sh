#!/usr/bin/env bash
# The one command for users: installs the runtime into .venv (first time only) and starts the
# console on http://127.0.0.1:8501 on the embedded stack. The first start builds a small demo
# index (SciFact + CMRC 2018 sample from ../shared/datasets) and shows its progress in the page.
# Extra arguments go to `streamlit run` (e.g. --server.port 8502).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Local mode (no login, everyone is admin) only on loopback: refuse before installing anything.
# AUTH_MODE may also come from a .env file in the working directory.
HOST="${HOST:-127.0.0.1}"
mode="${AUTH_MODE:-}"
if [ -z "$mode" ] && [ -f .env ]; then
    mode="$(sed -n 's/^[[:space:]]*AUTH_MODE[[:space:]]*=[[:space:]]*["'"'"']\{0,1\}\([a-z]*\).*/\1/p' .env | tail -n 1)"
fi
case "$HOST" in 127.*|localhost|::1) loopback=1 ;; *) loopback=0 ;; esac
if [ "${mode:-local}" = local ] && [ "$loopback" = 0 ]; then
    echo "[console.sh] refusing to serve on $HOST with AUTH_MODE=local (no login: everyone would be admin)." >&2
    echo "[console.sh] set AUTH_MODE=password (accounts: python -m backend users add) or AUTH_MODE=oidc." >&2
    exit 2
fi

VENV=.venv
STAMP="$VENV/.runtime-deps.sha256"
if ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    echo "[console.sh] creating $VENV" >&2
    "${PYTHON:-python3}" -m venv "$VENV"
fi
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]; then
    echo "[console.sh] pip install -r requirements.txt" >&2
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q -r requirements.txt
    echo "$want" >"$STAMP"
fi
# One BLAS thread: numpy scoring then does not fight the embedding model for the cores (p95 latency).
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
exec "$VENV/bin/python" -m streamlit run console/app.py \
    --server.address "$HOST" --server.port "${PORT:-8501}" "$@"
