# One image for every crmsync service; the command picks the service.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The locked runtime dependencies first (hash-checked; `make lock` refreshes the file),
# so a code change does not reinstall them.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY migrations ./migrations
# A fixed numeric uid, so Kubernetes can check runAsNonRoot (deploy/kubernetes).
RUN pip install --no-deps --no-build-isolation -e . \
    && groupadd --system --gid 10001 crmsync \
    && useradd --system --uid 10001 --gid 10001 crmsync
USER 10001:10001
ENTRYPOINT ["crmsync"]
