# The platform image: ingestion:<version>, the `ingest` CLI with Meltano and every plugin installed.
#
#   docker build --build-arg INGESTION_VERSION=0.1.0 -t ingestion:0.1.0 .
#   docker run --rm ingestion:0.1.0 version
#   docker run -v ./configs:/configs:ro -v ./specs:/specs:ro -v ./secrets:/secrets:ro \
#              -v state:/state -v logs:/logs ingestion:0.1.0 run <tenant>/<job>     # oneshot
#   docker run -p 3000:3000 ... ingestion:0.1.0                                   # serve (Dagster)
#
# All plugins are installed at build time (`meltano install`), so a container needs no network but
# the sources it reads and the lake it writes. The Meltano project lives at /opt/ingestion, the same
# path it is built at, because plugin venvs hold absolute paths (and the loader is installed from it).
# tests/unit/test_dockerfile.py checks the rules this file keeps (pins, user, volumes, healthcheck).

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    MELTANO_PROJECT_ROOT=/opt/ingestion \
    MELTANO_CLI_DISABLE_VERSION_CHECK=true \
    MELTANO_SEND_ANONYMOUS_USAGE_STATS=false

# A compiler for plugin dependencies that ship no wheel for this Python; only in this stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential=12.9 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/ingestion

# Locked dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
RUN python -m venv .venv \
    && .venv/bin/pip install uv==0.13.9

COPY target_iceberg_nessie/ target_iceberg_nessie/
COPY ingestion/ ingestion/
COPY devstack/ devstack/
# Editable, like the loader plugin below: the package finds schemas/ and registry/ beside it.
# Byte-compiled here, since the running image cannot write beside the (root-owned) sources.
RUN .venv/bin/uv pip install --python .venv/bin/python -c requirements/lock.txt -e ".[platform]" \
    && .venv/bin/python -m compileall -q target_iceberg_nessie ingestion devstack

# The Meltano project and every plugin (extractors from PyPI pinned by their constraints files,
# the loader from this source tree).
COPY meltano.yml ./
COPY extractors/ extractors/
COPY packages/ packages/
COPY taps/ taps/
RUN PATH="/opt/ingestion/.venv/bin:$PATH" meltano install \
    && rm -rf .meltano/logs .meltano/run .meltano/meltano.db

# Files the wheel does not ship, copied explicitly: JSON Schemas, the connector registry, the
# contracts, the default configs and the demo data.
COPY schemas/ schemas/
COPY registry/ registry/
COPY assets/ assets/
COPY configs/ configs/
COPY demo/ demo/


FROM ${PYTHON_IMAGE}

ARG PYTHON_IMAGE
ARG INGESTION_VERSION=0.1.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown

LABEL org.opencontainers.image.title="ingestion" \
      org.opencontainers.image.description="Singer taps via Meltano into Apache Iceberg tables on Project Nessie, exactly once, with data contracts" \
      org.opencontainers.image.version="${INGESTION_VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/${PYTHON_IMAGE}"

ENV PATH=/opt/ingestion/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MELTANO_PROJECT_ROOT=/opt/ingestion \
    MELTANO_CLI_DISABLE_VERSION_CHECK=true \
    MELTANO_SEND_ANONYMOUS_USAGE_STATS=false \
    MELTANO_DATABASE_URI=sqlite:////state/meltano.db \
    DAGSTER_HOME=/state/dagster \
    DAGSTER_WEBSERVER_HOST=0.0.0.0 \
    DAGSTER_WEBSERVER_PORT=3000 \
    INGEST_IN_CONTAINER=true

RUN groupadd --system --gid 10001 ingest \
    && useradd --system --uid 10001 --gid ingest --home-dir /home/ingest --create-home ingest \
    && install -d -o ingest -g ingest /configs /specs /secrets /state /logs

COPY --from=builder /opt/ingestion /opt/ingestion
# Meltano writes its run files under .meltano/; the venvs in it stay root's (read-only at run time).
# The project's default state and log folders are the volumes.
# The volumes start with the shipped contracts, registry and example configs (a named volume copies
# them on first use; a bind mount replaces them).
RUN chown ingest:ingest /opt/ingestion/.meltano \
    && ln -s /state /opt/ingestion/.state \
    && ln -s /logs /opt/ingestion/.logs \
    && cp -r /opt/ingestion/assets /opt/ingestion/registry /specs/ \
    && cp -r /opt/ingestion/configs/. /configs/

WORKDIR /opt/ingestion
VOLUME ["/configs", "/specs", "/secrets", "/state", "/logs"]
EXPOSE 3000

USER 10001:10001

# The Dagster webserver of `ingest serve` answers /server_info; python, because the image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/server_info' % os.environ.get('DAGSTER_WEBSERVER_PORT', '3000'), timeout=4)"]

ENTRYPOINT ["ingest"]
CMD ["serve"]
