"""CloudEvents 1.0 (JSON format): the envelope every event travels in, and an outbox row.

The envelope is written once, by the unit of work, into ``outbox.envelope``
(``adapters.sql.outbox.envelope_json``). Every sink sends those exact bytes: a webhook
signature covers them, so they are never re-serialised on the way. ``id`` is the domain's
stable event id: consumers dedupe on it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, TypeAlias

JsonValue: TypeAlias = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None
JsonObject: TypeAlias = dict[str, JsonValue]

SPEC_VERSION: Final = "1.0"
SOURCE: Final = "paytabs-guard"
CONTENT_TYPE: Final = "application/cloudevents+json; charset=utf-8"
"""The HTTP content type of a CloudEvent in structured mode (CloudEvents HTTP binding §3.2)."""


class InvalidCloudEvent(ValueError):
    """The text is not a CloudEvents 1.0 JSON envelope (names the rule, never the content)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudEvent:
    """A CloudEvents 1.0 envelope. ``id`` is stable per event: dedupe on it."""

    id: str
    type: str
    source: str = SOURCE
    subject: str | None = None
    time: str | None = None  # RFC 3339, UTC
    datacontenttype: str = "application/json"
    data: JsonObject = field(default_factory=dict)
    specversion: str = SPEC_VERSION

    @classmethod
    def from_json(cls, text: str | bytes) -> CloudEvent:
        """Parse and check a structured-mode envelope."""
        try:
            raw: object = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise InvalidCloudEvent("the envelope is not JSON") from None
        if not isinstance(raw, dict):
            raise InvalidCloudEvent("the envelope is not a JSON object")
        return cls.from_mapping(raw)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, object]) -> CloudEvent:
        """Check the attributes of a decoded envelope."""
        if raw.get("specversion") != SPEC_VERSION:
            raise InvalidCloudEvent("specversion must be '1.0'")
        required = {name: raw.get(name) for name in ("id", "type", "source")}
        for name, value in required.items():
            if not isinstance(value, str) or not value:
                raise InvalidCloudEvent(f"{name} must be a non-empty string")
        optional = {name: raw.get(name) for name in ("subject", "time", "datacontenttype")}
        for name, value in optional.items():
            if value is not None and not isinstance(value, str):
                raise InvalidCloudEvent(f"{name} must be a string")
        data = raw.get("data", {})
        if not isinstance(data, dict):
            raise InvalidCloudEvent("data must be a JSON object")
        return cls(
            id=str(required["id"]),
            type=str(required["type"]),
            source=str(required["source"]),
            subject=_optional_str(optional["subject"]),
            time=_optional_str(optional["time"]),
            datacontenttype=_optional_str(optional["datacontenttype"]) or "application/json",
            data=data,
        )

    def to_dict(self) -> JsonObject:
        """The envelope as JSON-ready attributes; absent optional attributes are left out."""
        envelope: JsonObject = {"specversion": self.specversion, "id": self.id}
        envelope["source"] = self.source
        envelope["type"] = self.type
        if self.subject is not None:
            envelope["subject"] = self.subject
        if self.time is not None:
            envelope["time"] = self.time
        envelope["datacontenttype"] = self.datacontenttype
        envelope["data"] = self.data
        return envelope

    def to_json(self) -> str:
        """Compact JSON in a fixed attribute order (the text stored in the outbox)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One outbox row as a sink receives it: ``envelope`` is the exact stored JSON text;
    ``traceparent``/``tracestate`` the W3C trace context it was written in (or None)."""

    seq: int
    event_id: str
    payment_id: str
    type: str
    envelope: str
    traceparent: str | None = None
    tracestate: str | None = None

    def cloud_event(self) -> CloudEvent:
        """The parsed envelope."""
        return CloudEvent.from_json(self.envelope)
