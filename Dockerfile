# One image for the gateway and every consumer; the command picks the role.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 ML_SERVER_DATA_DIR=/data
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY gateway ./gateway
COPY consumers ./consumers
COPY client ./client
RUN pip install --no-cache-dir .
RUN useradd --system --create-home ml && mkdir -p /data && chown ml /data
USER ml
EXPOSE 8080
CMD ["ml-server-gateway"]
