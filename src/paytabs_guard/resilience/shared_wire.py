"""What shared breaker state looks like in Redis: key names, the channel's messages, the Lua
scripts of the leases, and the local record of a trial lease (shared.py uses them)."""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

MESSAGE_VERSION: Final = 1

# Takes the prober lease if free, or renews it if this instance holds it.
TAKE_OR_RENEW: Final = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then
    redis.call('pexpire', KEYS[1], ARGV[2])
    return 1
end
if holder then
    return 0
end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# Deletes the probe lease only if this instance still holds it.
RELEASE_LEASE: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class LeaseState(Enum):
    """Where this instance stands on a breaker's trial lease."""

    ACQUIRING = "acquiring"
    HELD = "held"
    LOST = "lost"


@dataclass(slots=True)
class Lease:
    """This instance's view of one breaker's trial lease."""

    state: LeaseState
    until: float = 0.0  # for LOST: when the holder's lease expires (our monotonic clock)


def default_instance_id() -> str:
    """``host-pid-random``: unique per process, readable in Redis and in logs."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class Keys:
    """The Redis keys and channel of one prefix (``"paytabs-guard:"``) in one database."""

    prefix: str
    database: int = 0

    @property
    def channel(self) -> str:
        # Pub/sub ignores the database number: every client of the server hears every
        # channel. Deployments told apart only by their database (staging on db 1, production
        # on db 0) would open, and half-open, each other's breakers, so the channel names it.
        # Database 0 keeps the plain name, which instances of earlier releases still use.
        suffix = f":db{self.database}" if self.database else ""
        return f"{self.prefix}breaker:events{suffix}"

    def open_until(self, name: str) -> str:
        return f"{self.prefix}breaker:{name}:open_until"

    def probe(self, name: str) -> str:
        return f"{self.prefix}breaker:{name}:probe"

    def prober(self, name: str) -> str:
        return f"{self.prefix}breaker:{name}:prober"

    def probe_ok(self, name: str) -> str:
        return f"{self.prefix}breaker:{name}:probe_ok"

    def manual(self, name: str) -> str:
        # No expiry: an operator's manual state holds until someone resets it, restarts too.
        return f"{self.prefix}breaker:{name}:manual"


MANUAL_STATES: Final = frozenset({"forced_open", "forced_closed", "disabled"})
"""The manual states an operator can share; ``reset`` ends them (it is not a state)."""


@dataclass(frozen=True, slots=True)
class ManualRecord:
    """The value of a ``manual`` key: the state, who set it and when, and a fresh token that
    tells one command from the next (the same state set twice is two commands)."""

    state: str
    token: str
    instance: str
    at: str

    def encode(self) -> str:
        return json.dumps(
            {
                "v": MESSAGE_VERSION,
                "state": self.state,
                "token": self.token,
                "instance": self.instance,
                "at": self.at,
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, raw: str) -> ManualRecord | None:
        """The record, or None for a value this release cannot read (logged by the caller)."""
        try:
            body = json.loads(raw)
            record = cls(
                str(body["state"]),
                str(body["token"]),
                str(body["instance"]),
                str(body.get("at", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None
        return record if record.state in MANUAL_STATES else None


def encode_message(instance_id: str, name: str, event: str, **extra: Any) -> str:
    """A message on the channel: versioned JSON naming the breaker, the event and the sender."""
    body = {"v": MESSAGE_VERSION, "event": event, "name": name, "instance": instance_id}
    return json.dumps(body | extra, separators=(",", ":"))
