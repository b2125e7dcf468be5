"""Container health check: exit 0 when /health/live answers 200 (`python -m health.probe`)."""

import argparse
import http.client
import sys
from collections.abc import Sequence

DEFAULT_PORT = 8000
DEFAULT_PATH = "/health/live"

# Slim images have no curl. This uses only the standard library and does not load Django, so
# it costs little at every interval. Its `Host` header must be in ALLOWED_HOSTS.


def probe(*, port: int, host: str, path: str, timeout: float) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": host})
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m health.probe", description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--host", default="localhost", help="the Host header to send")
    parser.add_argument("--path", default=DEFAULT_PATH)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    ok = probe(port=args.port, host=args.host, path=args.path, timeout=args.timeout)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
