# Cloud Run image of Memory Agent: gunicorn serving main:app (gunicorn.conf.py binds $PORT).
# Production dependencies only (requirements.txt): no embedded PostgreSQL, no local
# embedding model (EMBEDDING_PROVIDER=openai in the cloud).

# ---- build: wheels into a virtualenv ---------------------------------------------------
FROM python:3.12-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

COPY requirements.txt /tmp/requirements.txt
RUN pip install --upgrade pip \
    && pip install -r /tmp/requirements.txt \
    && find /opt/venv -name "__pycache__" -type d -prune -exec rm -rf {} + \
    && find /opt/venv -name "tests" -type d -path "*/site-packages/*/tests" -prune -exec rm -rf {} +

# ---- runtime ------------------------------------------------------------------------------
FROM python:3.12-slim AS runtime

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8080

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
COPY --chown=app:app main.py gunicorn.conf.py ./
COPY --chown=app:app services/ ./services/
COPY --chown=app:app functions/ ./functions/

USER 10001:10001

EXPOSE 8080

# Liveness for local `docker run`; Cloud Run uses the startup/liveness probes in terraform/run.tf.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"8080\")}/healthz', timeout=4)"

CMD ["gunicorn", "--config", "gunicorn.conf.py", "main:app"]
