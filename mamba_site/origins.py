"""Pure: web origins as browsers write them in the `Origin` header (`scheme://host[:port]`)."""

import ipaddress
import re
from urllib.parse import urlsplit

SCHEMES = {"http": 80, "https": 443}
# A DNS label as browsers serialize it: ASCII letters, digits and hyphens (IDNs in punycode).
LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
DOTTED = re.compile(r"^[0-9.]+$")


class OriginError(ValueError):
    """Not an origin a browser could send; the message says why, for a form or a command."""


def origin_normalize(value: str) -> str:
    """The origin `value` names, as a browser serializes it: lower case, no default port, no
    trailing slash. Raises `OriginError` for anything else: a path, a query, credentials,
    wildcards, `null`, a scheme other than http(s)."""
    raw = value.strip()
    if not raw or raw == "null" or "*" in raw:
        raise OriginError(
            f"{raw or 'An empty value'!r} is not an origin: give scheme://host[:port]."
        )
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise OriginError(f"{raw!r} is not an origin: the host or port is malformed.") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or not raw.lower().startswith(f"{scheme}://"):
        raise OriginError(f"{raw!r} is not an origin: it must start with http:// or https://.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise OriginError(f"{raw!r} is not an origin: it must not hold a user name or password.")
    if parts.path not in ("", "/") or parts.query or parts.fragment or raw[-1] in "?#":
        raise OriginError(f"{raw!r} is not an origin: it must not have a path, query or fragment.")
    host = _host(parts.hostname or "", raw)
    if port == 0:
        raise OriginError(f"{raw!r} is not an origin: port 0 is not a port.")
    suffix = f":{port}" if port is not None and port != SCHEMES[scheme] else ""
    return f"{scheme}://{host}{suffix}"


def _host(hostname: str, raw: str) -> str:
    if not hostname:
        raise OriginError(f"{raw!r} is not an origin: it has no host.")
    if ":" in hostname:  # urlsplit gives an IPv6 literal without its brackets
        try:
            return f"[{ipaddress.IPv6Address(hostname).compressed}]"
        except ValueError:
            raise OriginError(f"{raw!r} is not an origin: the IPv6 address is malformed.") from None
    if DOTTED.match(hostname):
        try:
            return str(ipaddress.IPv4Address(hostname))
        except ValueError:
            raise OriginError(f"{raw!r} is not an origin: the IPv4 address is malformed.") from None
    try:
        ascii_host = hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise OriginError(f"{raw!r} is not an origin: the host name is malformed.") from None
    if not all(LABEL.match(label) for label in ascii_host.split(".")):
        raise OriginError(f"{raw!r} is not an origin: the host name is malformed.")
    return ascii_host


def origins_parse(value: str) -> list[str]:
    """Origins separated by commas, spaces or new lines, normalized and without repeats;
    raises `OriginError` naming every value that is not one."""
    origins: list[str] = []
    problems: list[str] = []
    for item in re.split(r"[\s,]+", value.strip()):
        if not item:
            continue
        try:
            origins.append(origin_normalize(item))
        except OriginError as error:
            problems.append(str(error))
    if problems:
        raise OriginError(" ".join(problems))
    return list(dict.fromkeys(origins))
