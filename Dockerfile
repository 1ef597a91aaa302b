# One image for both roles: `dbops operator` (the Deployment) and the runner commands (the Jobs).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# PostgreSQL 18 client tools (pg_dump, pg_restore, psql, with TLS) from the PGDG repository.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && install -d /usr/share/postgresql-common/pgdg \
 && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
      https://www.postgresql.org/media/keys/ACCC4CF8.asc \
 && . /etc/os-release \
 && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" \
      > /etc/apt/sources.list.d/pgdg.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-18 \
 && apt-get purge -y --auto-remove curl gnupg \
 && rm -rf /var/lib/apt/lists/*

ENV DBOPS_PG_BIN_DIR=/usr/lib/postgresql/18/bin

WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install . && rm -rf /src

RUN groupadd --system --gid 65532 dbops \
 && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --shell /usr/sbin/nologin dbops
USER 65532:65532
WORKDIR /tmp
ENV HOME=/tmp

ENTRYPOINT ["dbops"]
CMD ["operator", "--all-namespaces"]
