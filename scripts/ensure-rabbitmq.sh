#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers on the port of ML_SERVER_BROKER_URL (default localhost:5672).
# Running: nothing to do. Installed but stopped: start it. Missing: install Debian's package, then start it.
# A broker URL that points at another host is left alone.
set -euo pipefail

url=${ML_SERVER_BROKER_URL:-amqp://localhost:5672/}
read -r host port < <(python3 - "$url" <<'PY'
import sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
print(u.hostname or "localhost", u.port or (5671 if u.scheme == "amqps" else 5672))
PY
)

answers() {
    python3 - "$host" "$port" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

if answers; then
    exit 0
fi
case "$host" in
    localhost|127.*|::1) ;;
    *) echo "RabbitMQ at $host:$port does not answer, and it is not this machine's to start" >&2; exit 1 ;;
esac

sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
    echo "RabbitMQ is not installed: installing Debian's rabbitmq-server package" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq rabbitmq-server
fi

if ! answers; then
    echo "starting RabbitMQ" >&2
    $sudo env PATH="$PATH:/usr/sbin" rabbitmq-server -detached || true
fi
for _ in $(seq 1 120); do
    if answers; then
        echo "RabbitMQ answers on $host:$port" >&2
        exit 0
    fi
    sleep 1
done
echo "RabbitMQ did not start within 120 s; see /var/log/rabbitmq/" >&2
exit 1
