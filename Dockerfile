# memscribe: one image for every process (workers, beat, flower, the `memscribe` CLI).
# The default command is a supervised persist worker; docker-compose.yml overrides it per
# service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Optional. tiktoken downloads its encoding files on first use and caches them here.
# Air-gapped hosts: either build on a connected machine with --build-arg TIKTOKEN_PREFETCH=1
# (the encodings are baked into the image), or mount a folder that holds the cached encoding
# files at this path. Without either, set MEMSCRIBE_TOKENIZER=estimate.
ARG TIKTOKEN_CACHE_DIR=/opt/tiktoken-cache
ARG TIKTOKEN_PREFETCH=0
ENV TIKTOKEN_CACHE_DIR=${TIKTOKEN_CACHE_DIR}

WORKDIR /app

COPY pyproject.toml README.md ./
COPY core/ core/
COPY tasks/ tasks/
COPY worker/ worker/
COPY config/ config/
COPY bench/ bench/

# The project and Flower (the monitoring UI that docker-compose.yml runs from this image).
RUN pip install . "flower>=2.0" \
    && useradd --system --create-home --uid 10001 memscribe \
    && mkdir -p "$TIKTOKEN_CACHE_DIR" \
    && if [ "$TIKTOKEN_PREFETCH" = "1" ]; then \
         python -c "import tiktoken; tiktoken.get_encoding('o200k_base'); tiktoken.get_encoding('cl100k_base')"; \
       fi \
    && chown -R memscribe:memscribe "$TIKTOKEN_CACHE_DIR" \
    && mkdir -p /var/lib/memscribe/metrics \
    && chown -R memscribe:memscribe /var/lib/memscribe

# /var/lib/memscribe/metrics: the Prometheus samples volume (docs/observability.md), writable
# by the user the processes run as.
USER memscribe

# Supervised: Celery is restarted when it exits or stops draining (docs/operations.md).
CMD ["memscribe", "worker", "--families", "persist", "-c", "2", "-n", "persist", "-l", "INFO"]
