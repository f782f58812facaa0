# foreman-rt: the `foreman-rt` command (migrate, api, worker, enqueue, jobs ...) in one image.
#
#   docker build -t foreman-rt .
#   docker run --rm -e FOREMAN_DSN=postgresql://user:pass@host:5432/db foreman-rt migrate
#
# Containers always talk to a PostgreSQL given by FOREMAN_DSN (or --dsn); the embedded
# PostgreSQL is for laptops, and it refuses to run as root anyway. Job handlers are found
# through the `foreman_rt.handlers` entry-point group: build an image FROM this one that
# pip-installs the package registering them.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY sql ./sql
COPY foreman_rt ./foreman_rt
RUN pip install . \
    && useradd --create-home --home-dir /home/foreman --uid 10001 --shell /usr/sbin/nologin foreman

USER foreman
WORKDIR /home/foreman

EXPOSE 7011
ENTRYPOINT ["foreman-rt"]
CMD ["--help"]
