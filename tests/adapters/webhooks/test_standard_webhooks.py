"""Standard Webhooks v1: the published vector, malformed headers, tolerance edges, rotation."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from paytabs_guard.adapters.webhooks.standard import (
    InvalidWebhookSecret,
    VerifiedWebhook,
    WebhookVerificationError,
    decode_secret,
    generate_secret,
    headers_for,
    sign,
    verify,
)

# The official vector: standard-webhooks libraries/python/tests/test_webhooks.py::test_sign_function
# (the same values are in svix-webhooks python/tests/test_webhooks.py).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
NEAR_MISS = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="  # the same file's invalid case
TOLERANCE = 300
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def vector_headers(**overrides: str) -> dict[str, str]:
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TIMESTAMP),
        "webhook-signature": EXPECTED,
    }
    headers.update(overrides)
    return headers


def check(headers: dict[str, str], body: bytes = BODY, now: float = TIMESTAMP) -> VerifiedWebhook:
    return verify(headers, body, [SECRET], tolerance_seconds=TOLERANCE, now=now)


def reason_of(headers: dict[str, str], body: bytes = BODY, now: float = TIMESTAMP) -> str:
    with pytest.raises(WebhookVerificationError) as caught:
        check(headers, body, now)
    return caught.value.reason


# --- the vector -----------------------------------------------------------------------------


def test_sign_reproduces_the_published_vector() -> None:
    assert sign(MSG_ID, TIMESTAMP, BODY, SECRET) == EXPECTED


def test_the_published_vector_verifies_and_returns_its_dedupe_key() -> None:
    assert check(vector_headers()) == VerifiedWebhook(msg_id=MSG_ID, timestamp=TIMESTAMP)


def test_secret_forms_are_equivalent() -> None:
    bare = SECRET.removeprefix("whsec_")
    raw = base64.b64decode(bare)
    for form in (SECRET, bare, SecretStr(SECRET), raw, bare.rstrip("=")):
        assert sign(MSG_ID, TIMESTAMP, BODY, form) == EXPECTED


def test_headers_for_builds_the_vector_from_an_aware_datetime() -> None:
    now = datetime.fromtimestamp(TIMESTAMP, UTC) + timedelta(milliseconds=999)
    assert headers_for(MSG_ID, BODY, SECRET, now) == vector_headers()


def test_the_near_miss_signature_is_rejected() -> None:
    assert reason_of(vector_headers(**{"webhook-signature": NEAR_MISS})) == "no_matching_signature"


def test_a_body_changed_by_one_byte_is_rejected() -> None:
    assert reason_of(vector_headers(), body=b'{"test": 2432232315}') == "no_matching_signature"


def test_a_reserialised_body_is_rejected() -> None:
    # Verification runs on raw bytes: the same JSON without the space no longer verifies.
    assert reason_of(vector_headers(), body=b'{"test":2432232314}') == "no_matching_signature"


def test_headers_are_case_insensitive() -> None:
    headers = {key.title(): value for key, value in vector_headers().items()}
    assert check(headers).msg_id == MSG_ID


# --- malformed headers: always WebhookVerificationError --------------------------------------


@pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_or_empty_header(name: str, value: str | None) -> None:
    headers = vector_headers()
    if value is None:
        del headers[name]
    else:
        headers[name] = value
    assert reason_of(headers) == "missing_header"


def test_a_repeated_header_is_refused() -> None:
    headers = {**vector_headers(), "Webhook-Signature": NEAR_MISS}
    assert reason_of(headers) == "duplicate_header"


@pytest.mark.parametrize(
    "signature",
    [
        "v1",  # no comma: the reference library raises ValueError here
        "v1,",
        ",g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        "v1,a,b",  # an extra comma
        "garbage",
        "v1,not base64!",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE==",  # an extra '='
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE",  # padding missing
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=",  # non-canonical spare bits
        "v1,AAAA",  # valid base64, wrong length
        "v1," + base64.b64encode(bytes(33)).decode(),
        "v1,g0hM9SsE-OTPJTGt_tmIKtSyZlE3uFJELVlNIOLJ1OE=",  # url-safe alphabet
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OÉ=",  # non-ASCII
        "sha256,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",  # not a version token
        "V1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",  # bare base64
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",  # hex, no version
        EXPECTED + " v1",  # one bad token spoils the header
        " ".join([EXPECTED] * 33),  # more tokens than any rotation needs
    ],
)
def test_malformed_signature_header(signature: str) -> None:
    assert reason_of(vector_headers(**{"webhook-signature": signature})) == "malformed_signature"


@pytest.mark.parametrize(
    "signature",
    [
        "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",  # ed25519: not ours to check
    ],
)
def test_only_unknown_versions(signature: str) -> None:
    assert reason_of(vector_headers(**{"webhook-signature": signature})) == "no_supported_signature"


@pytest.mark.parametrize(
    "timestamp",
    [
        "1614265330.0",  # not an integer
        "1614265330.5",
        "1.61426533e9",
        "-1",
        "+1614265330",
        "01614265330",
        "0x603848f2",
        "1_614_265_330",
        "١٦١٤٢٦٥٣٣٠",  # Arabic-Indic digits: int() would accept them
        "1614265330 1614265330",
        "1614265330\n",
        "hello",
        "9" * 13,
        "NaN",
    ],
)
def test_malformed_timestamp(timestamp: str) -> None:
    assert reason_of(vector_headers(**{"webhook-timestamp": timestamp})) == "malformed_timestamp"


@pytest.mark.parametrize("msg_id", ["msg.1", "msg 1", "x" * 257, "msg\x00", "rés"])
def test_malformed_id(msg_id: str) -> None:
    assert reason_of(vector_headers(**{"webhook-id": msg_id})) == "malformed_id"


def test_unsupported_tokens_around_a_valid_one_still_verify() -> None:
    # The official library's multi-signature case: a rotation header with several tokens.
    other = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
    mixed = f"{other} v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {EXPECTED}  {other}"
    assert check(vector_headers(**{"webhook-signature": mixed})).msg_id == MSG_ID


HEADER_TEXT = st.text(st.characters(codec="latin-1"), max_size=80)  # what Starlette can decode


@given(msg_id=HEADER_TEXT, timestamp=HEADER_TEXT, signature=HEADER_TEXT)
def test_arbitrary_header_strings_only_raise_verification_errors(
    msg_id: str, timestamp: str, signature: str
) -> None:
    headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    with pytest.raises(WebhookVerificationError):
        check(headers)


@given(
    tokens=st.lists(
        st.tuples(
            st.sampled_from(["v1", "v1a", "v2", "v", "1", ""]),
            st.sampled_from([",", "", ",,", "="]),
            st.text(st.sampled_from("AEg0hM+/=-_ ,é"), max_size=48),
        ),
        max_size=5,
    )
)
def test_arbitrary_signature_tokens_only_raise_verification_errors(
    tokens: list[tuple[str, str, str]],
) -> None:
    signature = " ".join("".join(token) for token in tokens)
    with pytest.raises(WebhookVerificationError):
        check(vector_headers(**{"webhook-signature": signature}))


# --- tolerance ------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-TOLERANCE, 0, TOLERANCE])
def test_the_edges_of_the_tolerance_are_accepted(offset: int) -> None:
    # now = timestamp + offset: exactly tolerance seconds old, or ahead, is still fine.
    assert check(vector_headers(), now=TIMESTAMP + offset).timestamp == TIMESTAMP


def test_one_second_too_old_is_rejected() -> None:
    assert reason_of(vector_headers(), now=TIMESTAMP + TOLERANCE + 1) == "timestamp_too_old"


def test_one_second_in_the_future_is_rejected() -> None:
    assert reason_of(vector_headers(), now=TIMESTAMP - TOLERANCE - 1) == "timestamp_in_future"


@pytest.mark.parametrize("fraction", [0.001, 0.5, 0.999])
@pytest.mark.parametrize("offset", [-TOLERANCE, TOLERANCE])
def test_the_edges_hold_for_a_clock_between_whole_seconds(offset: int, fraction: float) -> None:
    # A real clock is rarely on a whole second; the timestamp always is. Both edges are
    # inclusive in whole seconds: exactly tolerance old or ahead passes whatever the fraction.
    now = TIMESTAMP + offset + fraction
    assert check(vector_headers(), now=now).timestamp == TIMESTAMP


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.999])
def test_one_whole_second_beyond_either_edge_is_rejected_between_seconds(fraction: float) -> None:
    too_old = TIMESTAMP + TOLERANCE + 1 + fraction
    too_new = TIMESTAMP - TOLERANCE - 1 + fraction
    assert reason_of(vector_headers(), now=too_old) == "timestamp_too_old"
    assert reason_of(vector_headers(), now=too_new) == "timestamp_in_future"


def test_now_may_be_an_aware_datetime() -> None:
    later = datetime.fromtimestamp(TIMESTAMP + TOLERANCE + 1, UTC)
    with pytest.raises(WebhookVerificationError, match="timestamp_too_old"):
        verify(vector_headers(), BODY, [SECRET], tolerance_seconds=TOLERANCE, now=later)


def test_a_naive_now_is_a_programming_error() -> None:
    naive = datetime(2021, 2, 25, 15, 2, 10)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(vector_headers(), BODY, [SECRET], tolerance_seconds=TOLERANCE, now=naive)


# --- rotation and secrets -------------------------------------------------------------------


def test_a_sender_signing_with_old_and_new_secrets_verifies_against_either() -> None:
    headers = headers_for(MSG_ID, BODY, [SECRET, OTHER_SECRET], TIMESTAMP)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, OTHER_SECRET):
        verify(headers, BODY, [secret], tolerance_seconds=TOLERANCE, now=TIMESTAMP)


def test_a_receiver_holding_old_and_new_secrets_accepts_either_sender() -> None:
    for secret in (SECRET, OTHER_SECRET):
        headers = headers_for(MSG_ID, BODY, secret, TIMESTAMP)
        verify(headers, BODY, [OTHER_SECRET, SECRET], tolerance_seconds=TOLERANCE, now=TIMESTAMP)


def test_a_retired_secret_is_rejected() -> None:
    headers = headers_for(MSG_ID, BODY, SECRET, TIMESTAMP)
    with pytest.raises(WebhookVerificationError, match="no_matching_signature"):
        verify(headers, BODY, [OTHER_SECRET], tolerance_seconds=TOLERANCE, now=TIMESTAMP)


def test_no_secret_fails_closed() -> None:
    with pytest.raises(WebhookVerificationError, match="no_secret_configured"):
        verify(vector_headers(), BODY, [], tolerance_seconds=TOLERANCE, now=TIMESTAMP)


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_", "whsec_" + "A" * 16, b"short"])
def test_unusable_secrets_are_configuration_errors(secret: str | bytes) -> None:
    with pytest.raises(InvalidWebhookSecret) as caught:
        decode_secret(secret)
    assert "base64!" not in str(caught.value)  # the secret itself is never quoted


def test_generated_secrets_round_trip() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(decode_secret(secret)) == 32
    headers = headers_for("evt_1", b"{}", secret, TIMESTAMP)
    verify(headers, b"{}", [secret], tolerance_seconds=1, now=TIMESTAMP)


def test_errors_never_carry_secrets_or_signatures() -> None:
    with pytest.raises(WebhookVerificationError) as caught:
        check(vector_headers(**{"webhook-signature": NEAR_MISS}))
    text = str(caught.value) + repr(caught.value)
    assert "g0hM9SsE" not in text
    assert "MfKQ9r8G" not in text


@pytest.mark.parametrize(("msg_id", "timestamp"), [("a.b", 1), ("ok", -1), ("ok", True)])
def test_sign_refuses_what_it_could_not_verify(msg_id: str, timestamp: int) -> None:
    with pytest.raises(ValueError, match=r"msg_id|timestamp"):
        sign(msg_id, timestamp, BODY, SECRET)
