# resell-scan-bot: slim Python, non-root, data on a volume, health from /healthz.
#   docker build -t resell-scan-bot .
#   docker run -d --name resell-scan-bot --env-file .env -e HTTP_HOST=0.0.0.0 \
#     -p 8080:8080 -v resell-scan-data:/data resell-scan-bot
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATABASE_PATH=/data/resell-scan-bot.sqlite3 \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080

WORKDIR /app
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY storage ./storage
COPY sandbox ./sandbox
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin bot \
    && mkdir -p /data \
    && chown bot /data

USER bot
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HTTP_PORT', '8080') + '/healthz', timeout=4)"]
# SIGTERM (docker stop) stops taking updates and lets in-flight work finish.
STOPSIGNAL SIGTERM
ENTRYPOINT ["resell-scan-bot"]
CMD ["run"]
