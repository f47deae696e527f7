"""How a setting's text becomes a value: comma-separated lists, URLs a client can connect to,
IP networks; and a URL as it may be shown (``redact_url``). The rules ``settings.py`` applies,
apart from the fields they apply to."""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    return field.upper()


def env_file_problem(path: str | None, error: OSError | UnicodeDecodeError) -> str:
    """The line that says why the ``.env`` file at ``path`` could not be read: where, never
    what (the file holds the secrets)."""
    if isinstance(error, UnicodeDecodeError):
        return (
            f"{path}: not UTF-8 text (byte {error.start} cannot be read); save the file as "
            "UTF-8, one VARIABLE=value a line"
        )
    return f"{path}: cannot be read ({error.strerror or type(error).__name__})"


def split_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def redact_url(url: str) -> str:
    """``url`` with the password of its user info and its query replaced by ``***``
    (``DATABASE_URL`` and ``REDIS_URL`` usually carry a password, a webhook URL a token in its
    query), for ``repr`` and messages; other URLs unchanged."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL urlsplit can read (a bad port): show nothing of it
        return "<unreadable URL>"
    # Edited as text, not rebuilt with geturl(), which drops the "//" of a URL without a host
    # (sqlite+aiosqlite:////var/lib/x.db came out as sqlite+aiosqlite://var/lib/x.db).
    redacted = url
    if parts.query:  # webhook URLs often carry a token there
        redacted = url[: url.index("?")] + "?***"
    if password:
        user_info, _, host = parts.netloc.rpartition("@")
        user = user_info.split(":", 1)[0]
        redacted = redacted.replace(parts.netloc, f"{user}:***@{host}", 1)
    return redacted


def require_http_url(value: str, *, base: bool = False) -> str:
    """``value`` if it is an absolute http(s) URL (every URL setting is one) that a client
    could connect to: a host without spaces, a port in range. A ``base`` URL (paths are
    appended to it) carries no query or fragment, and no user or password."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{redact_url(value)!r} must be an absolute http:// or https:// URL")
    check_host_and_port(value)
    if base and "@" in parts.netloc:
        # PUBLIC_BASE_URL's return URL is where PayTabs sends every shopper's browser, and both
        # go to PayTabs with each payment: a user:password@ in it is handed to all of them.
        raise ValueError(
            f"{redact_url(value)!r} must carry no user or password (user:password@): "
            "the URLs under it are given to PayTabs and to every shopper's browser"
        )
    if base and (parts.query or parts.fragment or value.endswith(("?", "#"))):
        raise ValueError(
            f"{redact_url(value)!r} must have no query (?) or fragment (#): paths are added to it"
        )
    return value


def check_host_and_port(value: str) -> None:
    """ValueError unless ``value`` names a host (no whitespace or control characters) and,
    if it has one, a port from 1 to 65535: found at start-up, not as a failed call later."""
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{redact_url(value)!r}: the port must be 1-65535") from None
    host = parts.hostname or ""
    if not host or any(c.isspace() or not c.isprintable() for c in host):
        raise ValueError(f"{redact_url(value)!r}: the host name is missing or not a host name")
    if port == 0:
        raise ValueError(f"{redact_url(value)!r}: the port must be 1-65535")


def check_redis_url(value: str) -> str:
    """``value`` if it is a Redis URL a client can connect to: ``redis://``, ``rediss://`` or
    ``unix://``, a host and port in range, and a database number as its path, if any."""
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    if value.startswith("unix://"):
        return value
    check_host_and_port(value)
    database = urlsplit(value).path.strip("/")
    if database and not (database.isascii() and database.isdigit()):
        raise ValueError(
            f"{redact_url(value)!r}: the path is the database number (/0, /1, ...), "
            f"not {database[:20]!r}"
        )
    return value


def check_database_url(value: str) -> None:
    """ValueError unless the engine can open ``value`` as written: one of its two drivers,
    SQLAlchemy reads it (a port that is a number, an IPv6 host in brackets), a port is
    1-65535, and a SQLite URL names a file. Found by ``config check`` and at start-up in one
    line, not as a traceback out of the migration or a connection attempt later."""
    from sqlalchemy.engine import make_url  # the service extra; only the service reads it
    from sqlalchemy.exc import ArgumentError

    if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
    try:
        parsed = make_url(value)
    except (ArgumentError, ValueError):
        raise ValueError(
            f"{redact_url(value)!r} is not a URL the driver can read "
            "(the port must be a number, an IPv6 host goes in [brackets])"
        ) from None
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ValueError(f"{redact_url(value)!r}: the port must be 1-65535")
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        # The engine refuses it too (an in-memory database is one shared connection).
        raise ValueError(
            "SQLite needs a database file (sqlite+aiosqlite:///path/to/file.db), "
            "not an in-memory database"
        )


#: IPv4-mapped IPv6: the client address check reads this whole network as 0.0.0.0/0.
_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")


def _every_address(network: IPNetwork) -> bool:
    return network.prefixlen == 0 or network == _MAPPED


def parse_networks(entries: object, *, proxies: bool = False) -> tuple[IPNetwork, ...]:
    """``entries`` as networks; ``proxies``: they are trusted proxies, so a network of every
    address (``0.0.0.0/0``, ``::/0``, ``::ffff:0:0/96``) is refused as ``*`` is: trusting
    every peer's ``X-Forwarded-For`` lets any client write the address that the allowlist and
    the rate limits judge it by."""
    items = split_list(entries)
    if not isinstance(items, list | tuple):
        raise ValueError("must be a comma-separated list of IP addresses or CIDRs")
    networks: list[IPNetwork] = []
    for raw in items:
        text = str(raw).strip()
        if text == "*":
            raise ValueError("'*' would trust every address; list the addresses or CIDRs")
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as error:
            if "has host bits set" in str(error):
                raise ValueError(
                    f"{text!r} has host bits set; write the network address "
                    f"(e.g. {ipaddress.ip_network(text, strict=False)})"
                ) from None
            raise ValueError(f"{text!r} is not an IPv4/IPv6 address or CIDR") from None
        if proxies and _every_address(network):
            raise ValueError(
                f"{text!r} takes in every address of its kind: it would believe anyone's "
                "X-Forwarded-For, as '*' would; list the proxies' addresses or CIDRs"
            )
        networks.append(network)
    if proxies and _cover_everything(networks):
        raise ValueError(
            f"{', '.join(str(n) for n in networks)} together take in every address of "
            "their kind: they would believe anyone's X-Forwarded-For, as '*' would; list the "
            "proxies' addresses or CIDRs"
        )
    return tuple(networks)


def _cover_everything(networks: list[IPNetwork]) -> bool:
    """Whether the networks together hold every IPv4 or every IPv6 address, as
    ``0.0.0.0/1,128.0.0.0/1`` does. IPv4-mapped IPv6 networks count as the IPv4 ones they
    map, since the client address check reads them so."""
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for network in networks:
        if isinstance(network, ipaddress.IPv4Network):
            v4.append(network)
        elif network.subnet_of(_MAPPED):
            mapped = int(network.network_address) & 0xFFFFFFFF
            v4.append(ipaddress.IPv4Network((mapped, network.prefixlen - 96)))
        else:
            v6.append(network)
    every_v4 = any(n.prefixlen == 0 for n in ipaddress.collapse_addresses(v4))
    return every_v4 or any(n.prefixlen == 0 for n in ipaddress.collapse_addresses(v6))


def parse_proxies(entries: object) -> tuple[IPNetwork, ...]:
    return parse_networks(entries, proxies=True)
