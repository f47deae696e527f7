"""Card numbers in the text a merchant sends are refused, not stored.

Descriptions, customer details and metadata are stored, sent to PayTabs, shown on the hosted
page, the console and every API answer. A card number there ("Order for card 4111 1111 1111
1111") would put card data on pages and in the database, where the log redactor cannot reach;
it is a 422 that names the field, and nothing is stored or sent.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paytabs_guard import observability
from paytabs_guard.observability import Redactor, has_card_number

from .api_support import VISA, Service, new_key

pytestmark = pytest.mark.anyio

BODY: dict[str, Any] = {"amount": "12.50", "currency": "SAR", "description": "Order 1001"}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"description": "Order for card 4111 1111 1111 1111 cvv 123"}, "description"),
        ({"metadata": {"card": "5200000000000114"}}, "metadata"),
        ({"metadata": {"4111-1111-1111-1111": "x"}}, "metadata"),
        ({"customer": {"name": "A 4111111111111111"}}, "customer.name"),
        # Any one separator and any script's digits read as a card number all the same; these
        # were stored (auditor's finding F2).
        ({"description": "4111.1111.1111.1111"}, "description"),
        ({"description": "4111/1111/1111/1111"}, "description"),
        ({"description": "4111_1111_1111_1111"}, "description"),
        ({"description": "4111\u00a01111\u00a01111\u00a01111"}, "description"),
        ({"description": "4111\u202f1111\u202f1111\u202f1111"}, "description"),
        ({"description": "4111\u200b1111\u200c1111\u200d1111"}, "description"),
        ({"description": "4111\u20601111\ufeff1111\u20601111"}, "description"),
        ({"description": "\uff14\uff11\uff11\uff11" + "\uff11" * 12}, "description"),  # full-width
        ({"description": "\u0664" + "\u0661" * 15}, "description"),  # Arabic-Indic
        ({"description": "\u06f4" + "\u06f1" * 15}, "description"),  # Eastern
        ({"metadata": {"note": "card 5200.0000.0000.0114"}}, "metadata"),
        # Not stored, but sent to PayTabs, which keeps and shows them.
        ({"customer": {"phone": VISA}}, "customer.phone"),
        ({"customer": {"phone": "4111-1111-1111-1111"}}, "customer.phone"),
        ({"customer": {"phone": "+4111 1111 1111 1111"}}, "customer.phone"),  # 16 digits
        # Stored with the saved card and listed at /customers/<id>/cards.
        ({"save_card": True, "customer_id": VISA}, "customer_id"),
        ({"save_card": True, "customer_id": "cust_4111111111111111"}, "customer_id"),
    ],
)
async def test_a_card_number_in_free_text_is_a_422_and_nothing_is_stored(
    service: Service, extra: dict[str, Any], field: str
) -> None:
    before = len(service.sim.engine.transactions)
    response = await service.api.post(
        "/payments/v2/create", json={**BODY, **extra}, headers={"Idempotency-Key": new_key()}
    )
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    assert "card number" in errors[0]["message"]
    assert "4111" not in response.text
    assert "5200" not in response.text
    listed = await service.api.get("/payments/v2")
    assert listed.json()["data"] == []
    assert len(service.sim.engine.transactions) == before


async def test_numbers_that_are_not_card_numbers_pass(service: Service) -> None:
    text = "Order 4111111111111112, ref ORD4111111111111111, call +966 50 123 4567"
    response = await service.api.post(
        "/payments/v2/create",
        json={**BODY, "description": text[:128], "metadata": {"ref": "TST2633824054353"}},
        headers={"Idempotency-Key": new_key()},
    )
    assert response.status_code == 201, response.text
    assert response.json()["description"] == text


async def test_gulf_identifiers_that_pass_the_luhn_check_are_no_card_numbers(
    service: Service,
) -> None:
    # Found refused by an outside check: each passes the Luhn check (an Emirates ID carries a
    # Luhn check digit itself), none has a card network's prefix and length.
    identifiers = {
        "emirates_id": "784-1990-1234567-6",
        "vat": "300012345600003",  # Saudi VAT number, 15 digits
        "iban": "KW81 CBKU 1557 3796 2702 8779 01",
        "order": "2026-1654-5789-7392",
        "booked": "20260413 865946 639",
        "order_id": "2026120600012308",
    }
    for value in identifiers.values():
        assert any(observability.luhn_valid(n) for n in observability.card_numbers(value))
    response = await service.api.post(
        "/payments/v2/create",
        json={**BODY, "description": f"Emirates ID {identifiers['emirates_id']}",
              "metadata": identifiers, "customer_id": "784199012345676", "save_card": True},
        headers={"Idempotency-Key": new_key()},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.json()["metadata"] == identifiers


async def test_a_phone_is_refused_as_a_card_number_only_when_it_can_be_one(
    service: Service,
) -> None:
    async def create(phone: str) -> int:
        response = await service.api.post(
            "/payments/v2/create",
            json={**BODY, "customer": {"phone": phone}},
            headers={"Idempotency-Key": new_key()},
        )
        return response.status_code

    assert await create("4111 1111 1111 1111") == 422
    # 13 to 15 digits that pass the Luhn check, written as phone numbers: after a + (at most
    # 15 digits there) or with a leading 0, which no card number has.
    for phone in ("+964 770 123 4568", "00966 50 123 4563", "050 1234 567 8908"):
        assert observability.luhn_valid("".join(c for c in phone if c.isdigit()))
        assert await create(phone) == 201, phone


async def test_digits_of_any_script_are_read_but_stored_as_written(service: Service) -> None:
    refused = await service.api.post(
        "/payments/v2/create",
        json={**BODY, "description": "\u0637\u0644\u0628 \u0664" + "\u0661" * 15},
        headers={"Idempotency-Key": new_key()},
    )
    assert refused.status_code == 422, refused.text
    text = "\u0637\u0644\u0628 \u0661\u0662\u0663 \uff11\uff12"  # not a card number
    payment = await service.create(description=text)
    assert payment["description"] == text
    assert (await service.api.get(f"/payments/v2/{payment['id']}")).json()["description"] == text


async def test_a_customer_id_that_is_a_card_number_is_not_looked_up(service: Service) -> None:
    response = await service.api.get(f"/payments/v2/customers/{VISA}/cards")
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert (error["in"], error["field"]) == ("path", "customer_id")
    assert "card number" in error["message"]
    assert "4111" not in response.text
    ok = await service.api.get("/payments/v2/customers/cust_1001/cards")
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    ("text", "card"),
    [
        ("4111 1111 1111 1111", True),
        ("order 12 4111 1111 1111 1111", True),  # a card in groups after other digits
        ("x-4111111111111111-y", True),
        ("4111111111111112", False),  # fails the Luhn check
        ("ORD4111111111111111", False),  # glued to letters: an order reference
        ("4111 1111 1111", False),  # 12 digits
        ("4111..1111..1111..1111", False),  # one separator between digits, not two
        ("192.168.100.200", False),  # 12 digits
        ("9999999999.99", False),  # an amount: 12 digits
        ("order 2026/12/06", False),
        ("784-1990-1234567-6", False),  # an Emirates ID: Luhn-valid, no card network's prefix
        ("300012345600003", False),  # 15 digits: only American Express (34, 37) has them
        ("5555555555554444", True),
        ("378282246310005", True),
        ("30569309025904", True),  # Diners Club, 14 digits
        ("37828224631000", False),  # an American Express prefix with 14 digits
        ("ORD_4111111111111111", True),  # "_" stands apart, as it did
        ("\u0664\u0661\u0661\u0661 " + "\u0661\u0661\u0661\u0661 " * 3, True),
    ],
)
def test_what_counts_as_a_card_number(text: str, card: bool) -> None:
    assert has_card_number(text) is card


def test_every_unicode_space_and_format_character_separates_digit_groups() -> None:
    # The separators are listed by hand (re has no category classes): each space and format
    # character of this Python's Unicode must be in the list.
    missing = [
        hex(code)
        for code in range(0x110000)
        if (unicodedata.category(chr(code)) in ("Cf", "Zs") or chr(code).isspace())
        and not observability._GROUP_SEPARATOR.fullmatch(chr(code))
    ]
    assert missing == []


_SEPARATORS = st.sampled_from(
    [" ", "-", ".", "/", "_", "\t", "\u00a0", "\u2007", "\u202f", "\u3000", "\u00ad",
     "\u200b", "\u200c", "\u200d", "\u200e", "\u2060", "\ufeff", "\u061c", ""]
)  # fmt: skip
# The zero of each script with decimal digits that a shopper's keyboard may type.
_ZEROS = st.sampled_from(["0", "\uff10", "\u0660", "\u06f0", "\u0966", "\u09e6", "\U0001d7ce"])
# Numbers a card network issues: its prefix and its lengths (card_networks.py).
_NETWORKS = [
    ("4", 13), ("4", 16), ("4", 19), ("51", 16), ("2221", 16), ("37", 15),
    ("6011", 16), ("6011", 19), ("3530", 16), ("62", 17), ("36", 14), ("9682", 16),
]  # fmt: skip


def _pan_of(network: tuple[str, int], digits: str) -> str:
    prefix, length = network
    body = prefix + digits[: length - len(prefix) - 1]
    return next(body + check for check in "0123456789" if observability.luhn_valid(body + check))


_PANS = st.builds(
    _pan_of,
    st.sampled_from(_NETWORKS),
    st.text(alphabet="0123456789", min_size=18, max_size=18),
)


@settings(max_examples=300, deadline=None)
@given(pan=_PANS, separators=st.lists(_SEPARATORS, min_size=18, max_size=18), zero=_ZEROS)
def test_a_card_number_is_found_whatever_the_separators_and_digits(
    pan: str, separators: list[str], zero: str
) -> None:
    digits = [chr(ord(zero) + int(digit)) for digit in pan]
    between = separators[: len(pan) - 1]
    written = digits[0] + "".join(s + d for s, d in zip(between, digits[1:], strict=True))
    text = f"Order for {written}, thanks"
    assert has_card_number(text)
    assert pan in list(observability.card_numbers(text))  # as ASCII digits
    scrubbed = Redactor().scrub(text)
    assert scrubbed == "Order for [card redacted], thanks"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({VISA: "x"}, "[card redacted]"),  # an unknown field
        ({"customer": {"4111.1111.1111.1111": "x"}}, "customer.[card redacted]"),
        ({"metadata": {f"card {VISA}": 1}}, "metadata.card [card redacted]"),  # not a string
    ],
)
async def test_a_card_number_in_a_field_name_is_not_repeated(
    service: Service, extra: dict[str, Any], field: str
) -> None:
    # A 422 names what it refuses: a name the client chose holding a card number came back
    # in the error body, past the rule that refuses it in stored text.
    response = await service.api.post(
        "/payments/v2/create", json={**BODY, **extra}, headers={"Idempotency-Key": new_key()}
    )
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert "1111" not in response.text


async def test_a_card_number_as_a_query_parameter_is_not_repeated(service: Service) -> None:
    response = await service.api.get("/payments/v2", params={VISA: "1", "limt": "2"})
    assert response.status_code == 422, response.text
    fields = [e["field"] for e in response.json()["errors"]]
    assert sorted(fields) == ["[card redacted]", "limt"]  # other names stay as sent
    assert "1111" not in response.text


async def test_a_card_number_as_an_id_in_the_address_is_not_repeated(service: Service) -> None:
    # 404s name the id they looked for; the client's own input, repeated, but never a card
    # number, as a field name in a 422 is not.
    for response in (
        await service.api.get(f"/payments/v2/{VISA}"),
        await service.api.delete(f"/payments/v2/cards/{VISA}"),
        await service.api.get(f"/payments/v2/{VISA}/"),
    ):
        assert response.status_code == 404, response.text
        assert "[card redacted]" in response.text
        assert "1111" not in response.text
    other = await service.api.get("/payments/v2/pay_nope")
    assert "'pay_nope'" in other.json()["detail"]


@pytest.mark.parametrize(
    "return_url",
    [
        f"https://shop.example/thank-you?pan={VISA}",  # was stored, and shown by every GET
        f"https://shop.example/orders/{VISA}",
        f"https://{VISA}/thank-you",  # was repeated: "has '4111...' as its host"
        "https://4111-1111-1111-1111.x!/",
        f"https://[{VISA}]/",
    ],
)
async def test_a_card_number_in_a_return_url_is_a_422_and_not_repeated(
    service: Service, return_url: str
) -> None:
    # The return URL is stored, shown by GET /payments/v2/{id} and the console, and sent to
    # PayTabs: the same rule as the free text. Its other 422s named the host as sent.
    response = await service.api.post(
        "/payments/v2/create",
        json={**BODY, "return_url": return_url},
        headers={"Idempotency-Key": new_key()},
    )
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == ["return_url"]
    assert "card number" in errors[0]["message"]
    assert "1111" not in response.text
    assert (await service.api.get("/payments/v2")).json()["data"] == []


async def test_a_card_number_in_any_other_name_is_not_repeated(service: Service) -> None:
    # Event ids, breaker names, event types and sink names came back as sent in their 404s
    # and 422s, where payment ids, card ids and field names are redacted.
    payment = await service.create()
    events = await service.api.get("/payments/v2/events", params={"payment_id": payment["id"]})
    event_id = events.json()["data"][0]["id"]
    for response, status in (
        (await service.api.get(f"/payments/v2/events/{VISA}"), 404),
        (await service.api.post(f"/payments/v2/events/{VISA}/redeliver"), 404),
        (await service.admin.post(f"/payments/v2/circuit-breaker/{VISA}/open"), 404),
        (await service.api.get("/payments/v2/events", params={"type": VISA}), 422),
        (await service.admin.get("/payments/v2/events/dead-letters", params={"type": VISA}), 422),
        (
            await service.api.post(
                f"/payments/v2/events/{event_id}/redeliver", json={"sinks": [f"to {VISA}"]}
            ),
            422,
        ),
        (
            await service.admin.post(
                "/payments/v2/events/unconfigured-sinks/drop", json={"sink": f"to {VISA}"}
            ),
            200,  # no sink has that name: nothing dropped, and the name not repeated
        ),
    ):
        assert response.status_code == status, response.text
        assert "[card redacted]" in response.text
        assert "1111" not in response.text


async def test_a_long_name_is_not_repeated_in_a_404(service: Service) -> None:
    # As for payment ids: a 20 KB "id" is not worth sending back to its sender.
    long = "e" * 20_000
    for response in (
        await service.api.get(f"/payments/v2/events/{long}"),
        await service.admin.post(f"/payments/v2/circuit-breaker/{long}/open"),
    ):
        assert response.status_code == 404, response.text
        assert len(response.content) < 1_000
        assert "with that" in response.json()["detail"]


async def test_a_long_sink_name_is_refused_not_repeated(service: Service) -> None:
    # A redelivery's sink names were unbounded: fifty of 1,250 characters came back whole in
    # the 422 for sinks the event never had, a 63 KB answer. A sink name takes 200, as in
    # every other request that names one.
    payment = await service.create()
    events = await service.api.get("/payments/v2/events", params={"payment_id": payment["id"]})
    event_id = events.json()["data"][0]["id"]
    response = await service.api.post(
        f"/payments/v2/events/{event_id}/redeliver",
        json={"sinks": [f"webhook:{n}" + "e" * 1_250 for n in range(50)]},
    )
    assert response.status_code == 422, response.text
    assert len(response.content) < 5_000
    assert "e" * 201 not in response.text
    assert all(error["field"].startswith("sinks.") for error in response.json()["errors"])


@pytest.mark.parametrize(
    ("extra", "field", "says"),
    [
        ({"customer": {"name": "x" * 200 + f" {VISA}"}}, "customer.name", "at most 128"),
        ({"customer": {"city": "x" * 70 + f" {VISA}"}}, "customer.city", "at most 64"),
        (
            {"return_url": "https://shop.example/" + "a" * 2100 + f"?pan={VISA}"},
            "return_url",
            "at most 2048",
        ),
    ],
)
async def test_a_text_too_long_is_refused_before_it_is_searched_for_card_numbers(
    service: Service, extra: dict[str, Any], field: str, says: str
) -> None:
    # The card-number search costs ~11 us a character on digits between separators: an
    # optional field's length, and a return_url's, were checked after it, so 60 KB of
    # "1/1/1..." in customer.name took a second of event loop. The length comes first now.
    response = await service.api.post(
        "/payments/v2/create", json={**BODY, **extra}, headers={"Idempotency-Key": new_key()}
    )
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == field
    assert says in error["message"], error["message"]


async def test_a_long_unknown_field_name_is_cut_in_the_422(service: Service) -> None:
    # A 60 KB name came back twice (a 120 KB answer) after a second of searching it.
    name = "1/" * 30_000
    response = await service.api.post(
        "/payments/v2/create", json={**BODY, name: 1}, headers={"Idempotency-Key": new_key()}
    )
    assert response.status_code == 422, response.text
    assert len(response.content) < 2_000
    [error] = response.json()["errors"]
    assert error["field"] == "…"  # nothing but digits and separators before the cut
    named = await service.api.post(
        "/payments/v2/create",
        json={**BODY, "x" * 100 + f"/{VISA}": 1},
        headers={"Idempotency-Key": new_key()},
    )
    assert [e["field"] for e in named.json()["errors"]] == ["x" * 64 + "…"]


async def test_an_unknown_event_type_is_cut_before_it_is_searched(service: Service) -> None:
    # Searched whole for card numbers (20 KB of "1-1-1...": a fifth of a second), then cut.
    long = "x" * 35 + f"-{VISA}" + "-1" * 10_000
    response = await service.api.get("/payments/v2/events", params={"type": long})
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["message"].startswith("Unknown event type '" + "x" * 35 + "…'")
