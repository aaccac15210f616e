# nameorigin: the Telegram bot with its shipped models. Data (SQLite, models, dataset) lives in the /app/data volume.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The CPU-only build of torch comes from PyTorch's own index: PyPI's build would add gigabytes of CUDA.
# Its dependencies come next, pinned, with everything else.
RUN pip install --no-deps --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# Then the package (with its shipped models and migrations). The sources are removed once installed,
# so every process (the bot and its fine-tune child) imports the installed package.
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY core ./core
COPY bot ./bot
COPY migrations ./migrations
RUN pip install -c constraints.txt . \
    && pip check \
    && python -c "import torch; assert torch.version.cuda is None, 'a CUDA build of torch slipped in'" \
    && rm -rf core bot migrations pyproject.toml README.md constraints.txt build nameorigin.egg-info \
    && groupadd --gid 10001 nameorigin \
    && useradd --create-home --uid 10001 --gid 10001 nameorigin \
    && mkdir -p /app/data \
    && chown nameorigin:nameorigin /app/data

USER 10001:10001

# Everything the bot writes goes to the volume; the token and other settings come from the environment.
ENV DATABASE_URL=sqlite+aiosqlite:////app/data/nameorigin.db \
    MODEL_DIR=/app/data/models \
    NAMES_DATA_DIR=/app/data/names \
    HEALTH_LISTEN=0.0.0.0:8080 \
    WEBHOOK_LISTEN=0.0.0.0:8080
VOLUME ["/app/data"]
EXPOSE 8080

# GET /health answers 200 while the bot runs, its database takes writes and, in polling mode, getUpdates works.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4).status != 200)"]

# `serve` applies the database migrations, then runs until SIGTERM (which `docker stop` sends).
CMD ["nameorigin", "serve"]
