# syntax=docker/dockerfile:1.7
# The flightline image: Dagster code server, run worker, step worker and `flightline` CLI.
#
#   docker build --build-context wheels=/opt/wheels -t ghcr.io/flightline/flightline:0.1.0 .
#   docker build --build-context wheels=/opt/wheels --build-arg TORCH_VARIANT=cu128 \
#       -t ghcr.io/flightline/flightline:0.1.0-cuda .
#
# Dependencies are exactly uv.lock's (`uv sync --frozen`). The lock takes torch's CPU wheel from
# a local wheel folder (pyproject's find-links, /opt/wheels): pass that folder as the `wheels`
# build context. TORCH_VARIANT=cu128 (or another PyTorch CUDA index: cu126, cu129...) installs
# the same torch version from PyTorch's CUDA index instead; the CUDA runtime comes in its wheels,
# the driver from the GPU node.

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# ---- builder: resolve nothing, install the locked set into /opt/flightline/.venv ----
FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/flightline/.venv
WORKDIR /opt/flightline
COPY --from=wheels . /opt/wheels/
# Dependencies first: this layer is reused until pyproject.toml or uv.lock change.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    if [ "$TORCH_VARIANT" = "cpu" ]; then \
      uv sync --frozen --no-dev --no-install-project; \
    else \
      uv sync --frozen --no-dev --no-install-project --no-install-package torch && \
      uv pip install --python /opt/flightline/.venv/bin/python \
        --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
        --extra-index-url https://pypi.org/simple "torch==${TORCH_VERSION}"; \
    fi
COPY README.md workspace.yaml dagster.yaml ./
COPY pipelines ./pipelines
COPY serving ./serving
COPY feature_repo ./feature_repo
# The project itself, not editable; --inexact keeps a CUDA torch installed above.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --inexact \
      $( [ "$TORCH_VARIANT" = "cpu" ] || echo --no-install-package torch )

# ---- runtime: the virtual environment and sources, no build tools, a non-root user ----
FROM ${PYTHON_IMAGE} AS runtime
# LightGBM needs OpenMP at run time.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 flightline \
    && useradd --uid 10001 --gid 10001 --home-dir /home/flightline --create-home \
       --shell /usr/sbin/nologin flightline \
    && mkdir -p /opt/dagster/dagster_home /var/lib/flightline \
    && chown flightline:flightline /opt/dagster/dagster_home /var/lib/flightline
WORKDIR /opt/flightline
# Owned by root, read-only for the app user: code and dependencies cannot be changed at run time.
COPY --from=builder /opt/flightline /opt/flightline
# The `bento` step runs `bentoml build`, which locks the Bento's requirements with uv.
COPY --from=uv /uv /usr/local/bin/uv
ENV PATH=/opt/flightline/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    FLIGHTLINE_DATA_ROOT=/var/lib/flightline \
    BENTOML_HOME=/var/lib/flightline/bentoml
USER 10001:10001
EXPOSE 3030
# The user-code deployment's command; the chart overrides it with dagsterApiGrpcArgs, and run and
# step workers run `dagster api execute_run|execute_step` in this image.
CMD ["dagster", "api", "grpc", "--host", "0.0.0.0", "--port", "3030", \
     "--module-name", "pipelines.definitions"]
