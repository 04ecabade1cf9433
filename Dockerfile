# The bot as a container: the serving install (onnxruntime on CPU, no torch) and the model bundle.
#   docker build -t animerec .
#   printf '/help\n' | docker run -i --rm animerec          # the console front end (shipped config)
#   docker compose -f deploy/compose.yaml up -d              # Telegram/Discord + PostgreSQL
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --user-group animerec

WORKDIR /app
# An editable install: the config's relative paths (exports/default, data/) are resolved from the
# project folder, which is /app.
COPY pyproject.toml README.md config.toml ./
COPY bot/ bot/
COPY inference/ inference/
COPY exports/default/ exports/default/
COPY deploy/config.toml deploy/config.toml
# cpu: onnxruntime; postgres: asyncpg for [storage] url = "env".
RUN pip install -e '.[cpu,postgres]' \
    && mkdir -p /app/data \
    && chown animerec:animerec /app/data

USER animerec
# SQLite store ([storage] path = "data/animerec.sqlite3") when no PostgreSQL is used.
VOLUME ["/app/data"]
# /healthz and /metrics when [metrics] enabled = true (deploy/config.toml enables them).
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"]

CMD ["python", "-m", "bot"]
