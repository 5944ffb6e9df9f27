#!/usr/bin/env bash
# The one command for users: installs the runtime into .venv (first time only) and starts the
# console on http://127.0.0.1:8501 on the embedded stack. The first start builds a small demo
# index (SciFact + CMRC 2018 sample from ../shared/datasets) and shows its progress in the page.
# Extra arguments go to `streamlit run` (e.g. --server.port 8502).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

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
    --server.address "${HOST:-127.0.0.1}" --server.port "${PORT:-8501}" "$@"
