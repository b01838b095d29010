# Minimal image; issue 6 turns this into the multi-stage production build.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY authserver ./authserver
COPY migrations ./migrations
RUN pip install --no-cache-dir . && useradd --system --uid 10001 authserver \
    && mkdir -p /app/keys && chown authserver /app/keys
USER authserver
EXPOSE 8000
ENTRYPOINT ["authserver"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
