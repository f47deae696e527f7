"""``verify_callback`` and ``verify_return`` given arguments of the wrong type: the errors they
document (``ValueError`` saying what to pass, ``InvalidSignature``), never a ``TypeError`` or
``AttributeError`` from deep inside hashing or URL quoting, which a web handler catching the
documented errors would turn into a 500 (and PayTabs into retries)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from paytabs_guard import (
    HostedPageRequest,
    InvalidSignature,
    Money,
    PayTabs,
    sign_callback,
    verify_callback,
    verify_return,
)
from paytabs_guard.adapters.paytabs.signature import sign_return
from paytabs_simulator.config import DEFAULT_PROFILE_ID, DEFAULT_SERVER_KEY
from paytabs_simulator.server import run_simulator, serve_asgi

KEY = "SGJNZ96JLG-JDMKHGRWT9-RWRK2KJNRJ"
BODY = json.dumps(
    {
        "tran_ref": "TST2215201242166",
        "cart_id": "order-42",
        "cart_currency": "SAR",
        "cart_amount": "150.00",
        "tran_type": "Sale",
    }
).encode()
SIGNATURE = sign_callback(BODY, KEY)
RETURN = {"cartId": "order-42", "respStatus": "A", "tranRef": "TST2215201242166"}
SIGNED_RETURN = {**RETURN, "signature": sign_return(RETURN, KEY)}

paytabs = PayTabs(profile_id=987654, server_key=KEY)

Call = Callable[[], object]


def wrong(value: object) -> Any:
    """``value`` as the caller passed it, past the type hints (which say what to pass)."""
    return value


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda: paytabs.verify_callback(wrong(BODY.decode()), SIGNATURE), "request body as bytes"),
        (lambda: paytabs.verify_callback(wrong(json.loads(BODY)), SIGNATURE), "body as bytes"),
        (lambda: paytabs.verify_callback(wrong(None), SIGNATURE), "raw request body as bytes"),
        (lambda: verify_callback(wrong(BODY.decode()), SIGNATURE, KEY), "request body as bytes"),
        (lambda: paytabs.verify_callback(BODY, wrong(SIGNATURE.encode())), "signature as str"),
        (lambda: verify_callback(BODY, SIGNATURE, wrong(KEY.encode())), "server key as str"),
        (lambda: verify_callback(BODY, SIGNATURE, wrong([KEY.encode()])), "server key as str"),
        (lambda: verify_return(SIGNED_RETURN, wrong(KEY.encode())), "server key as str"),
        (
            lambda: paytabs.verify_return({**SIGNED_RETURN, "tranRef": wrong(["TST1"])}),
            "'tranRef' is list .*parse_qsl",
        ),
        (
            lambda: paytabs.verify_return({**SIGNED_RETURN, "signature": wrong(["0" * 64])}),
            "'signature' is list",
        ),
        (lambda: paytabs.verify_return({**RETURN, "respCode": wrong(0)}), "'respCode' is int"),
        (lambda: paytabs.verify_return(wrong("cartId=order-42")), "a mapping of names"),
        (lambda: paytabs.verify_return(wrong(list(RETURN.items()))), "a mapping of names"),
    ],
    ids=[
        "callback-str-body",
        "callback-parsed-body",
        "callback-none-body",
        "function-str-body",
        "callback-bytes-signature",
        "function-bytes-key",
        "function-bytes-key-in-list",
        "return-bytes-key",
        "return-list-value",
        "return-list-signature",
        "return-int-value",
        "return-query-string",
        "return-pairs",
    ],
)
def test_an_argument_of_the_wrong_type_is_a_value_error_saying_what_to_pass(
    call: Call, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        call()


def test_a_key_left_unset_verifies_nothing() -> None:
    with pytest.raises(InvalidSignature, match="no key configured"):
        verify_callback(BODY, SIGNATURE, wrong(None))


def test_a_bytes_like_body_is_the_same_bytes() -> None:
    # as the type hints say too (mypy's --strict-bytes, the default from mypy 2, refuses a
    # bytearray or memoryview where the hint is plain bytes)
    for body in (bytearray(BODY), memoryview(BODY)):
        assert paytabs.verify_callback(body, SIGNATURE).cart_id == "order-42"
        verify_callback(body, sign_callback(body, KEY), KEY)


class MultiValued(dict[str, list[str]]):
    """A form as Django's ``QueryDict`` holds one: a list per name underneath, the last value
    of each through ``items()`` and ``get()``, lists through ``dict(form)``."""

    def items(self) -> Iterator[tuple[str, str]]:  # type: ignore[override]
        return ((name, values[-1]) for name, values in super().items())

    def get(self, name: str, default: object = None) -> object:  # type: ignore[override]
        return super().get(name, [default])[-1]


def test_a_framework_s_multi_valued_form_verifies_by_its_values() -> None:
    form = MultiValued({name: [value] for name, value in SIGNED_RETURN.items()})
    paytabs.verify_return(wrong(form))
    tampered = MultiValued({**form, "respStatus": ["D"]})
    with pytest.raises(InvalidSignature):
        paytabs.verify_return(wrong(tampered))


@pytest.mark.anyio
async def test_a_starlette_form_is_verified_as_it_comes() -> None:
    """The browser return as FastAPI and Starlette hand it over: ``await request.form()``, a
    ``FormData`` whose values may be uploads. The hint wanted ``Mapping[str, str]``, so mypy
    --strict refused the documented call (``verify_return(await request.form())``); each
    value is checked to be one str when the return is verified, as it always was."""
    async with run_simulator() as simulator:
        client = PayTabs(
            profile_id=DEFAULT_PROFILE_ID,
            server_key=DEFAULT_SERVER_KEY,
            base_url=simulator.base_url,
        )

        async def thank_you(request: Request) -> PlainTextResponse:
            try:
                client.verify_return(await request.form())
            except InvalidSignature as error:
                return PlainTextResponse(error.reason, status_code=400)
            return PlainTextResponse("verified")

        app = Starlette(routes=[Route("/thank-you", thank_you, methods=["POST"])])
        async with client, serve_asgi(app, lifespan="off") as shop, httpx.AsyncClient() as browser:
            page = await client.create_payment_page(
                HostedPageRequest(
                    cart_id="order-7",
                    amount=Money.of("1.500", "KWD"),
                    description="Order 7",
                    return_url=f"{shop}/thank-you",
                )
            )
            assert page.redirect_url is not None
            paid = await browser.post(
                f"{simulator.base_url}/_sim/pages/{page.redirect_url.rsplit('/', 1)[-1]}/pay",
                json={"card_number": "4111111111111111"},
            )
            back = paid.raise_for_status().json()["return"]
            assert back["method"] == "POST"
            returned = await browser.post(back["url"], data=back["fields"])
            assert (returned.status_code, returned.text) == (200, "verified")
            tampered = await browser.post(back["url"], data={**back["fields"], "respStatus": "D"})
            assert (tampered.status_code, tampered.text) == (400, "mismatch")
