# The compstream worker image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY schemas ./schemas
COPY examples ./examples
RUN pip install --no-cache-dir -e .
ENV COMPSTREAM_DATA_DIR=/data
VOLUME ["/data"]
CMD ["compstream", "worker", "--loglevel", "INFO"]
