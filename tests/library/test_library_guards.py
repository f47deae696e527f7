"""What the library refuses or corrects so that a natural first call cannot go wrong: a blank
or unsendable server key, a hand-made breaker config that would count "not found" as an
outage, and a GET return beside the shop's own query parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

import httpx
import pytest

from paytabs_guard import (
    AuthenticationFailed,
    BreakerConfig,
    DuplicateRequest,
    FollowUpRequest,
    FollowUpType,
    HostedPageRequest,
    InvalidSignature,
    Money,
    PageTranType,
    PayTabs,
    PayTabsClient,
    RetryConfig,
    TokenChargeRequest,
    TransactionNotFound,
)
from paytabs_guard.adapters.paytabs.signature import sign_callback, sign_return
from paytabs_guard.settings import ConfigError, load_settings
from paytabs_simulator.config import DEFAULT_PROFILE_ID, DEFAULT_SERVER_KEY
from paytabs_simulator.server import run_simulator

pytestmark = pytest.mark.anyio

KEY = "SGJNZ96JLG-JDMKHGRWT9-RWRK2KJNRJ"


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("", "blank"),
        ("   ", "blank"),
        (KEY + "\n", "line break"),
        (" " + KEY, "a space"),
        (KEY[:10] + "é" + KEY[11:], "printable ASCII"),
    ],
    ids=["empty", "spaces", "trailing-newline", "leading-space", "non-ascii"],
)
def test_a_server_key_that_cannot_authenticate_is_refused_when_the_client_is_built(
    key: str, says: str
) -> None:
    # Else: a blank key verifies callbacks anyone can sign, and a key with a newline fails
    # every request before it leaves, each failure counted as a gateway outage.
    with pytest.raises(ValueError, match=says):
        PayTabs(profile_id=987654, server_key=key)
    with pytest.raises(ValueError, match=says):
        PayTabsClient(profile_id=987654, server_key=key, base_url="https://secure.paytabs.sa")


def test_the_service_refuses_a_server_key_it_could_not_send() -> None:
    settings = load_settings({"PAYTABS_PROFILE_ID": "987654", "PAYTABS_SERVER_KEY": KEY + "\n"})
    with pytest.raises(ConfigError, match="PAYTABS_SERVER_KEY: the server key holds"):
        settings.require_paytabs_credentials()


async def test_a_hand_made_breaker_config_does_not_count_not_found_as_an_outage() -> None:
    # BreakerConfig(...)'s own is_failure counts every exception; around PayTabs a query for
    # an unknown transaction is an answer, not an outage.
    def not_found(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"code": 113, "message": "Transaction not found"})

    async with PayTabs(
        profile_id=987654,
        server_key=KEY,
        base_url="https://secure.paytabs.sa",
        breaker=BreakerConfig(consecutive_failures=3),
        transport=httpx.MockTransport(not_found),
    ) as paytabs:
        for number in range(8):
            with pytest.raises(TransactionNotFound):
                await paytabs.query_transaction(f"TST{number}")
        assert paytabs.registry.get("query").state.value == "closed"


def test_the_client_verifies_a_get_return_with_the_shop_s_own_parameters() -> None:
    fields = {
        "cartId": "order-42",
        "respCode": "G84718",
        "respMessage": "Authorised",
        "respStatus": "A",
        "tranRef": "TST2215201242166",
    }
    signed = {**fields, "signature": sign_return(fields, KEY), "order": "42", "lang": "ar"}
    paytabs = PayTabs(profile_id=987654, server_key=KEY)
    paytabs.verify_return(signed)
    with pytest.raises(InvalidSignature, match="mismatch"):
        paytabs.verify_return({**signed, "respStatus": "D"})


def test_a_region_is_read_whatever_its_case_and_the_client_never_shows_its_key() -> None:
    paytabs = PayTabs(profile_id=987654, server_key=KEY, region="are")
    assert repr(paytabs) == "PayTabs(profile_id=987654, base_url='https://secure.paytabs.com')"
    assert KEY not in repr(paytabs)
    assert load_settings({"PAYTABS_REGION": " sau"}).paytabs_region == "SAU"
    with pytest.raises(ValueError, match="not a valid Region: one of ARE, SAU, "):
        PayTabs(profile_id=987654, server_key=KEY, region="KSA")


@pytest.mark.parametrize(
    "url",
    ["127.0.0.1:{port}", "localhost:{port}", "ftp://127.0.0.1:{port}", "http//127.0.0.1:{port}",
     "http://", "http://127.0.0.1:{port}/?sandbox=1"],
)  # fmt: skip
async def test_a_base_url_no_request_could_use_is_refused_when_the_client_is_built(
    url: str,
) -> None:
    """Not a payment reported as "outcome unknown" (AmbiguousGatewayError) after seconds of
    retries: a URL without http(s):// never sent anything, yet each attempt failed as
    UnsupportedProtocol, which reads as a request that may have been taken."""
    async with run_simulator() as simulator:
        port = httpx.URL(simulator.base_url).port
        with pytest.raises(ValueError, match=r"http:// or https:// URL|query|host"):
            PayTabs(
                profile_id=DEFAULT_PROFILE_ID,
                server_key=DEFAULT_SERVER_KEY,
                base_url=url.format(port=port),
            )
        async with PayTabs(
            profile_id=DEFAULT_PROFILE_ID,
            server_key=DEFAULT_SERVER_KEY,
            base_url=f"http://127.0.0.1:{port}/",
        ) as paytabs:
            assert await paytabs.query_cart("order-1") == []


@pytest.mark.parametrize("profile_id", [0, -5, True, 12.0, "12a", "", None, 2**63])
def test_a_profile_id_paytabs_could_not_know_is_refused_when_the_client_is_built(
    profile_id: object,
) -> None:
    with pytest.raises(ValueError, match="profile_id must be a positive integer"):
        PayTabs(profile_id=profile_id, server_key=KEY)  # type: ignore[arg-type]


def test_a_profile_id_read_from_the_environment_as_digits_is_taken() -> None:
    assert PayTabs(profile_id="987654", server_key=KEY).client.profile_id == 987654  # type: ignore[arg-type]


def test_callbacks_signed_with_the_key_before_a_rotation_still_verify() -> None:
    old, new, other = "SOLD96JLG-JDMKHGRWT9-RWRK2KJNRJ", KEY, "SOTH96JLG-JDMKHGRWT9-RWRK2KJNRJ"
    body = b'{"tran_ref":"TST2215201242166","cart_id":"c-1","cart_currency":"SAR",' \
        b'"cart_amount":"1.00","tran_type":"Sale"}'  # fmt: skip
    rotating = PayTabs(profile_id=987654, server_key=new, previous_server_keys=old)
    for key in (new, old):
        assert rotating.verify_callback(body, sign_callback(body, key)).cart_id == "c-1"
    with pytest.raises(InvalidSignature):
        rotating.verify_callback(body, sign_callback(body, other))
    # without the old key, its signature is refused; a blank previous key verifies nothing
    for alone in (PayTabs(profile_id=987654, server_key=new, previous_server_keys=["", " "]),):
        with pytest.raises(InvalidSignature):
            alone.verify_callback(body, sign_callback(body, old))
    fields = {"acquirerMessage": "", "cartId": "c-1", "respCode": "G1", "respStatus": "A",
              "tranRef": "TST2215201242166"}  # fmt: skip
    rotating.verify_return({**fields, "signature": sign_return(fields, old)})
    assert old not in repr(rotating.__dict__)
    with pytest.raises(ValueError, match="previous_server_keys as str"):
        PayTabs(profile_id=987654, server_key=new, previous_server_keys=[old.encode()])  # type: ignore[list-item]


def _sale(**changes: object) -> HostedPageRequest:
    fields: dict[str, object] = {
        "cart_id": "order-1", "amount": Money.of("150.00", "SAR"), "description": "x",
    }  # fmt: skip
    return HostedPageRequest(**{**fields, **changes})  # type: ignore[arg-type]


def _refund(**changes: object) -> FollowUpRequest:
    fields: dict[str, object] = {
        "kind": FollowUpType.REFUND, "tran_ref": "TST1", "cart_id": "order-1",
        "amount": Money.of("5.00", "SAR"), "description": "x",
    }  # fmt: skip
    return FollowUpRequest(**{**fields, **changes})  # type: ignore[arg-type]


def _charge(**changes: object) -> TokenChargeRequest:
    fields: dict[str, object] = {
        "token": "2C4655BE67A3E537C6B593FF60817AB9", "tran_ref": "TST1", "cart_id": "order-2",
        "amount": Money.of("5.00", "SAR"), "description": "x",
    }  # fmt: skip
    return TokenChargeRequest(**{**fields, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize("build", [_sale, _refund, _charge], ids=["page", "follow-up", "token"])
@pytest.mark.parametrize("amount", ["150.00", Decimal("150.00"), 15000, 150.0, None])
def test_a_request_s_amount_that_is_not_money_is_refused_saying_what_to_pass(
    build: Callable[..., object], amount: object
) -> None:
    # Before: AttributeError ("'str' object has no attribute 'currency'") from deep inside
    # the client, at the first call, caught by no documented error class.
    with pytest.raises(ValueError, match=r"amount must be Money \(Money\.of\('150\.00', 'SAR'\)"):
        build(amount=amount)


def test_a_request_s_kind_or_tran_type_written_as_text_is_read_as_its_enum() -> None:
    # Before: AttributeError ("'str' object has no attribute 'value'") at the first call.
    assert _sale(tran_type="auth").tran_type is PageTranType.AUTH
    assert _refund(kind="capture").kind is FollowUpType.CAPTURE
    assert _charge(tran_type="sale").tran_type is PageTranType.SALE
    assert _refund(kind="capture").to_wire(987654)["tran_type"] == "capture"
    with pytest.raises(ValueError, match=r"kind must be a FollowUpType: one of capture, void, "):
        _refund(kind="Refund ")
    with pytest.raises(ValueError, match=r"tran_type must be a PageTranType: one of sale, auth"):
        _sale(tran_type="Sale")


async def test_a_refused_key_says_which_profile_and_host_to_check() -> None:
    # PayTabs' own text, "Authentication failed. Check authentication header.", sent a
    # newcomer to the header; the usual cause is a key of another profile or region (the
    # library's region defaults to SAU, the service's to ARE).
    async with (
        run_simulator() as simulator,
        PayTabs(
            profile_id=DEFAULT_PROFILE_ID,
            server_key="SWRONG96JL-JDMKHGRWT9-RWRK2KJNRJ",
            base_url=simulator.base_url,
        ) as paytabs,
    ):
        with pytest.raises(AuthenticationFailed) as refused:
            await paytabs.query_cart("order-1")
    notes = " ".join(getattr(refused.value, "__notes__", []))
    assert f"profile {DEFAULT_PROFILE_ID}" in notes
    assert simulator.base_url in notes
    assert "region" in notes
    assert "SWRONG" not in notes
    assert refused.value.message == "Authentication failed. Check authentication header."


async def test_a_second_refund_identical_to_the_first_is_told_why_paytabs_refused_it() -> None:
    # PayTabs refuses a request identical to one it took (409 code 4). A second refund of the
    # same amount and description ended as DuplicateRequest with a note that "the first may
    # still take effect", which reads as "this refund may have landed"; it did not.
    fast = RetryConfig(base_delay=0.001, max_delay=0.001)
    async with (
        run_simulator() as simulator,
        httpx.AsyncClient() as browser,
        PayTabs(
            profile_id=DEFAULT_PROFILE_ID,
            server_key=DEFAULT_SERVER_KEY,
            base_url=simulator.base_url,
            retry=fast,
        ) as paytabs,
    ):
        page = await paytabs.create_payment_page(_sale(cart_id="order-9"))
        assert page.redirect_url is not None
        paid = await browser.post(
            f"{simulator.base_url}/_sim/pages/{page.redirect_url.rsplit('/', 1)[-1]}/pay",
            json={"card_number": "4111111111111111"},
        )
        sale = paid.raise_for_status().json()["transaction"]["tran_ref"]
        refund = _refund(tran_ref=sale, cart_id="order-9", description="Refund")
        first = await paytabs.follow_up(refund)
        with pytest.raises(DuplicateRequest) as refused:
            await paytabs.follow_up(refund)
        notes = " ".join(getattr(refused.value, "__notes__", []))
        assert f"PayTabs already held {first.tran_ref}, a refund of the same amount" in notes
        assert "give it a description of its own" in notes
        second = await paytabs.follow_up(replace(refund, description="Refund 2"))
        assert second.tran_ref != first.tran_ref
        assert len(await paytabs.query_cart("order-9")) == 3  # the sale and two refunds
