# syntax=docker/dockerfile:1
#
# One image for every role of riskstream; the command picks the role, with
# the same entry points as the README:
#
#   docker build -t riskstream .
#   docker run --rm -e RISKSTREAM_MODEL_TOKEN -p 8501:8501 riskstream riskstream serve --served-name m
#   docker run --rm riskstream faust -A app worker
#   docker run --rm riskstream riskstream datagen --count 100
#
# There is no ENTRYPOINT, so whatever follows the image name is the command;
# without one, `riskstream --help` lists the sub-commands. docker-compose.yml
# runs the whole pipeline from this image (see the README's operations section).
#
# The build trains the default model (`riskstream train`, seed 42, about 10 s)
# into RISKSTREAM_MODEL_REPOSITORY, so the image can serve on its own. Compose
# mounts a named volume there: Docker fills an empty named volume from the
# image on first use, and from then on the volume is the repository that
# `riskstream train` and `riskstream models promote` update while the servers
# run. No secret is baked in: the model token and the ClickHouse password come
# from the environment at run time.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: wheels of riskstream and of every dependency, at the versions
# --- constraints.txt pins (the ones the tests run with).
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
# .dockerignore admits only the packaging files and the installed packages
# (no tests, no .env, no local data).
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels -c constraints.txt .

# --- runtime: Python, a Java runtime (sklearn2pmml's converter and pypmml's
# --- evaluator are Java), riskstream in a virtualenv, a non-root user.
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="riskstream" \
      org.opencontainers.image.description="Real-time disease-risk prediction: Kafka -> Faust workers -> PMML model servers -> ClickHouse" \
      org.opencontainers.image.licenses="Apache-2.0"

# The slim image leaves out man pages, yet the JRE's postinst links its man
# page: the folder must exist. Debian's package versions are not pinned:
# bookworm's security updates replace them, and a pin would break the build.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/riskstream \
    PATH=/opt/riskstream/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Only wheels built above, nothing from an index at this point; the bind
# mount keeps the wheels out of the image's layers.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv "$VIRTUAL_ENV" \
 && pip install --no-cache-dir --no-index --find-links /wheels /wheels/riskstream-*.whl

# The data folder holds the model repository and the workers' Faust data; a
# container is free to replace it with volumes.
RUN groupadd --system --gid 10001 riskstream \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/riskstream \
        --shell /usr/sbin/nologin riskstream \
 && install -d -o riskstream -g riskstream /var/lib/riskstream

ENV RISKSTREAM_DATA_DIR=/var/lib/riskstream \
    RISKSTREAM_MODEL_REPOSITORY=/var/lib/riskstream/models \
    RISKSTREAM_MODEL_SERVER_HOST=0.0.0.0

# Numeric, so that a runtime (Kubernetes' runAsNonRoot) can verify it is not root.
USER 10001:10001
WORKDIR /home/riskstream

# Proves at build time that the installed package finds its data set, Java
# and the PMML tool chain, and leaves the model the servers start with.
RUN riskstream train

# 8501: first model server (`riskstream serve`); 6066: a worker's web server
# (/stats, /dashboard, /metrics). Health depends on the role, so it is
# checked per service in docker-compose.yml, not here.
EXPOSE 8501 6066

CMD ["riskstream", "--help"]
