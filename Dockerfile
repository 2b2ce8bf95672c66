# kagiya service image: slim Python, pinned dependencies, non-root, read-only root filesystem friendly.
# Build: docker build -t kagiya:0.1.0 .   Run: see deploy/ (Kustomize) and docs/operations.md.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.txt ./
RUN python -m venv /opt/kagiya && /opt/kagiya/bin/pip install --no-deps -r requirements.txt
COPY pyproject.toml README.md ./
COPY kagiya ./kagiya
RUN /opt/kagiya/bin/pip install --no-deps .

FROM python:3.11-slim-bookworm
# gnupg: pgp recipients for `kagiya secrets`; iptables: the node agent's init step (deploy/agent.md).
# The rest of the runtime is pure Python wheels.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gnupg=2.2.* iptables=1.8.* \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 kagiya \
    && useradd --system --uid 10001 --gid kagiya --home-dir /var/lib/kagiya --shell /usr/sbin/nologin kagiya \
    && mkdir -p /var/lib/kagiya \
    && chown kagiya:kagiya /var/lib/kagiya
COPY --from=build /opt/kagiya /opt/kagiya
WORKDIR /app
COPY app.py ./
ENV PATH=/opt/kagiya/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KAGIYA_DATA_DIR=/var/lib/kagiya \
    KAGIYA_HOST=0.0.0.0 \
    KAGIYA_PORT=8443
USER 10001:10001
EXPOSE 8443
# Same entry as the README: one process per replica, the HTTP front reading whole requests before a bounded
# handler pool runs the app (docs/operations.md, "Serving model"); TLS is required off loopback.
CMD ["kagiya", "serve"]
