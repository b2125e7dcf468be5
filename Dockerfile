# syntax=docker/dockerfile:1
# Mamba's image: `docker build -t mamba:0.1.0 .`, then `docker run -p 8000:8000 --env-file .env mamba:0.1.0`.
#
# The build and start steps are the commands CI runs: tests/deploy/test_dockerfile.py reads
# them from this file and runs them (pip against the environment CI installed, collectstatic,
# the CMD, the HEALTHCHECK), and checks that they are the Makefile's (`make static`, the
# server of `make run`):
#   install   python -m pip install --no-cache-dir -r requirements.txt
#   static    python manage.py collectstatic --noinput
#   start     python -m mamba_site.serve (daphne, draining streams on SIGTERM)
#   health    python -m health.probe (GET /health/live with Host: localhost)

FROM python:3.12.13-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /app
COPY requirements.txt ./
RUN python -m pip install --no-cache-dir -r requirements.txt
COPY . .
# The key only lets the production settings load; collectstatic needs no other setting.
RUN MAMBA_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput

FROM python:3.12.13-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    MAMBA_STATIC__USE_FINDERS=false
RUN groupadd --system --gid 10001 mamba \
    && useradd --system --uid 10001 --gid mamba --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin mamba
COPY --from=build /opt/venv /opt/venv
# Owned by root and read-only to the service (Kubernetes also mounts the root read-only).
COPY --from=build /app /app
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "health.probe"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "mamba_site.serve", "--bind", "0.0.0.0", "--port", "8000"]
