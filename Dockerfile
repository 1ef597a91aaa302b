# One image for both roles: `dbops operator` (the Deployment) and the runner commands (the Jobs).
# Lint: hadolint (scripts/test). The chart, the Job builders and the test bed read ENTRYPOINT and USER from here
# (tests/unit/test_image.py keeps them in step).
#
# BASE_IMAGE is pinned by digest (update digest and version pins together, e.g. with Renovate). A local build
# passes a debootstrap-made Debian base instead and PG_CLIENT=debian (scripts/build-image-local, then
# scripts/smoke-image-local).
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LANG=C.UTF-8
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Build the package into /install (a root-relative tree copied over / below): no compiler or pip cache in
# the final image.
FROM base AS build
# A CA bundle for pip behind a TLS-inspecting proxy (local builds only; the build stage is discarded).
ARG PIP_CERT
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python3 -m pip install --no-cache-dir --break-system-packages --root /install .

FROM base AS runtime
# pgdg: PostgreSQL 18 client tools (pg_dump, pg_restore, psql, with TLS) from the PostgreSQL project's Debian
# repository, as in production. debian: Debian's own client (local builds that cannot reach that repository).
ARG PG_CLIENT=pgdg
ARG PG_MAJOR=18
ARG CA_CERTIFICATES_VERSION=20250419~deb12u2
ARG CURL_VERSION=7.88.1-10+deb12u15
RUN if [ "${PG_CLIENT}" = pgdg ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends "ca-certificates=${CA_CERTIFICATES_VERSION}" "curl=${CURL_VERSION}" \
      && install -d /usr/share/postgresql-common/pgdg \
      && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
           https://www.postgresql.org/media/keys/ACCC4CF8.asc \
      && . /etc/os-release \
      && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" \
           > /etc/apt/sources.list.d/pgdg.list \
      && apt-get update \
      && apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}=${PG_MAJOR}.*" \
      && apt-get purge -y --auto-remove curl; \
    else \
      apt-get update \
      && apt-get install -y --no-install-recommends "ca-certificates=${CA_CERTIFICATES_VERSION}" "postgresql-client-${PG_MAJOR}=${PG_MAJOR}.*"; \
    fi \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s "/usr/lib/postgresql/${PG_MAJOR}" /usr/lib/postgresql/client

COPY --from=build /install/ /

# The runner writes only under /tmp (an emptyDir in every pod); the root filesystem is read-only.
ENV DBOPS_PG_BIN_DIR=/usr/lib/postgresql/client/bin \
    HOME=/tmp \
    TMPDIR=/tmp
RUN dbops --version && squawk --version && "${DBOPS_PG_BIN_DIR}/pg_dump" --version \
 && groupadd --system --gid 65532 dbops \
 && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin dbops
USER 65532:65532
WORKDIR /tmp

ENTRYPOINT ["dbops"]
CMD ["operator", "--all-namespaces"]
