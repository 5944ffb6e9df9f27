# The console on the production stack: point it at Qdrant, Redis, PostgreSQL and an
# OpenAI-compatible LLM with the settings in the README (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data OPENBLAS_NUM_THREADS=1 AUTH_MODE=password
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY backend ./backend
COPY console ./console
COPY pages ./pages
COPY .streamlit ./.streamlit
RUN useradd --create-home --uid 10001 console && mkdir -p /data && chown console /data
USER console
VOLUME ["/data"]
EXPOSE 8501 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health')"
# The console (with the API under /api/v1); the API alone: python -m backend serve --host 0.0.0.0 --port 8000 --workers 2
CMD ["python", "-m", "streamlit", "run", "console/app.py", "--server.address", "0.0.0.0", "--server.port", "8501"]
