# syntax=docker/dockerfile:1
# The lwmecps_nb REST server (`lwmecps-nb serve`) as a container: CPU-only torch, a non-root user, and a root
# filesystem that may be mounted read-only (everything written goes under /data and /tmp).
#
#   docker build -t lwmecps-nb:0.1.0 .
#   docker run --rm --read-only -p 127.0.0.1:8010:8010 \
#     -v "$PWD/deploy/kubernetes/api-token.txt:/var/run/secrets/lwmecps/token:ro" lwmecps-nb:0.1.0
#
# (the token file must be readable by uid 10001, the image's user.)
# The Kubernetes manifests in deploy/kubernetes run this image. Python is pinned to a patch release on a fixed
# Debian; pin it by digest too (python:3.11.13-slim-bookworm@sha256:...) for byte-identical rebuilds.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- build: the package's wheel, installed with its pinned dependencies into a virtual environment -------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY constraints.txt ./
# torch first, from PyTorch's CPU index: PyPI's torch wheel pulls the multi-GB CUDA libraries. The version is the
# one constraints.txt pins (tests/test_deploy.py checks they agree); `torch==2.13.0` then accepts 2.13.0+cpu below.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
# what setup.py reads (settings.ini, README.md, LICENSE) and the package itself; the server image takes the extras
# the REST server needs: [server] (FastAPI, the store), [k8s] (real clusters), [tracking] (W&B)
COPY setup.py settings.ini MANIFEST.in README.md LICENSE ./
COPY lwmecps_nb ./lwmecps_nb
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip install -c constraints.txt "$(ls /wheels/lwmecps_nb-*.whl)[server,k8s,tracking]" \
 && lwmecps-nb --version

# ---- runtime: the virtual environment on a clean slim image, no compilers, no sources ---------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="lwmecps-nb" \
      org.opencontainers.image.description="lwmecps_nb REST server: RL autoscaling of edge Kubernetes clusters" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/lwmecps/lwmecps_nb" \
      org.opencontainers.image.url="https://lwmecps.github.io/lwmecps_nb" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="lwmecps_nb developers" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# a numeric user (runAsNonRoot can verify it) without a login shell; /data is its only writable folder in the image
RUN groupadd --gid 10001 lwmecps \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /data --shell /usr/sbin/nologin lwmecps \
 && mkdir -p /data && chown 10001:10001 /data && chmod 0750 /data
COPY --from=build /opt/venv /opt/venv
# Everything written at run time goes to /data (LWMECPS_HOME: the embedded database, models, W&B offline runs) or
# /tmp (task scratch folders, caches): both are volumes, so `docker run --read-only` and Kubernetes'
# readOnlyRootFilesystem work. MONGODB_URL unset: the embedded database under /data/mongodb. W&B: offline without
# WANDB_API_KEY, as outside the image.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    LWMECPS_HOME=/data HOME=/data TMPDIR=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib XDG_CACHE_HOME=/tmp/.cache \
    WANDB_DIR=/data \
    MONGODB_DATABASE=lwmecps_gym
VOLUME ["/data", "/tmp"]
WORKDIR /data
USER 10001:10001
EXPOSE 8010
# for `docker run` (Kubernetes uses the Deployment's probes): the process answers; /readyz adds the database
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8010/livez', timeout=4)"]
ENTRYPOINT ["lwmecps-nb"]
# A non-loopback bind needs the bearer token: mount the file here (a Kubernetes Secret in deploy/kubernetes).
CMD ["serve", "--host", "0.0.0.0", "--port", "8010", "--token-file", "/var/run/secrets/lwmecps/token"]
