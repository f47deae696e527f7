"""PayTabs signatures: every vector of docs/paytabs.md §12.3 (and webhook checklist item 6)."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from paytabs_guard.adapters.paytabs.signature import (
    InvalidSignature,
    php_http_build_query,
    return_signing_string,
    sign_callback,
    sign_return,
    verify_callback,
    verify_return,
)

KEY = SecretStr("SGJNZ96JLG-JDMKHGRWT9-RWRK2KJNRJ")
IPN_BODY = (
    b'{"tran_ref":"TST2215201242166","merchant_id":1000,"profile_id":987654,'
    b'"cart_id":"cart_11111","cart_description":"Order 1","cart_currency":"SAR",'
    b'"cart_amount":"100.00","tran_currency":"SAR","tran_total":"100.00","tran_type":"Sale",'
    b'"tran_class":"ECom","payment_result":{"response_status":"A","response_code":"G84718",'
    b'"response_message":"Authorised","transaction_time":"2022-06-01T10:00:00Z"},'
    b'"payment_info":{"payment_method":"Visa","card_type":"Credit","card_scheme":"Visa",'
    b'"payment_description":"4111 11## #### 1111","expiryMonth":12,"expiryYear":2030},'
    b'"ipn_trace":"IPNS0001.00000000.00000001"}'
)
IPN_SIGNATURE = "3b006820dfebff0e417b8f2a727e1915b7b9558775498f3bf6981d0dbf578c03"

DOCUMENTED_RETURN = {
    "acquirerMessage": "",
    "acquirerRRN": "",
    "cartId": "cart_11111",
    "customerEmail": "email@domain.com",
    "respCode": "G84718",
    "respMessage": "Authorised",
    "respStatus": "A",
    "signature": "7a181a32c768621eb6966107752ee70205a01f1c4403a3d13c0ff604f591f988",
    "token": "",
    "tranRef": "TST2215201242166",
}
CONSTRUCTED_RETURN = {
    "acquirerMessage": "",
    "acquirerRRN": "",
    "cartId": "cart 2#",
    "customerEmail": "a.b@example.com",
    "respCode": "G12345",
    "respMessage": "Insufficient Funds",
    "respStatus": "D",
    "signature": "7b44bb98c9d4ef0353e1de794070859f6cd3aedfd01bb77e845aeac63f0ed89c",
    "token": "",
    "tranRef": "TST2215201242167",
}


def test_ipn_vector() -> None:
    assert sign_callback(IPN_BODY, KEY) == IPN_SIGNATURE
    verify_callback(IPN_BODY, IPN_SIGNATURE, [KEY])


def test_checklist_vector_and_its_one_byte_change() -> None:
    key = SecretStr("TEST-SERVER-KEY")
    body = (
        b'{"tran_ref":"TST0000000000001","cart_id":"cart_1",'
        b'"payment_result":{"response_status":"A"}}'
    )
    good = "1131558be52119e53b72d4e3982a7e99189173a3ce1021a598a089c989f9fd67"
    assert sign_callback(body, key) == good
    altered = body.replace(b'"A"', b'"D"')
    assert sign_callback(altered, key) == (
        "1a6a1edda0b332280dadaeb0e7ae59f0f10687421b4fce19aeb378d9fd2a05dc"
    )
    with pytest.raises(InvalidSignature, match="mismatch"):
        verify_callback(altered, good, [key])


def test_reserialised_json_fails_because_verification_is_on_raw_bytes() -> None:
    reserialised = json.dumps(json.loads(IPN_BODY)).encode()
    assert reserialised != IPN_BODY
    with pytest.raises(InvalidSignature):
        verify_callback(reserialised, IPN_SIGNATURE, [KEY])


def test_upper_case_hex_is_accepted() -> None:
    verify_callback(IPN_BODY, IPN_SIGNATURE.upper(), [KEY])


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("zz" * 32, "malformed"),
        (IPN_SIGNATURE[:-1], "malformed"),
        (IPN_SIGNATURE + "0", "malformed"),
        ("sha256=" + IPN_SIGNATURE, "malformed"),
        ("v1," + IPN_SIGNATURE, "malformed"),
        (IPN_SIGNATURE[:-1] + ("0" if IPN_SIGNATURE[-1] != "0" else "1"), "mismatch"),
    ],
)
def test_bad_headers_are_rejected_with_a_reason(header: str | None, reason: str) -> None:
    with pytest.raises(InvalidSignature) as caught:
        verify_callback(IPN_BODY, header, [KEY])
    assert caught.value.reason == reason


def test_rotation_accepts_old_and_new_key_and_rejects_a_revoked_one() -> None:
    new, old = SecretStr("NEW-KEY"), KEY
    verify_callback(IPN_BODY, IPN_SIGNATURE, [new, old])
    with pytest.raises(InvalidSignature):
        verify_callback(IPN_BODY, IPN_SIGNATURE, [new])
    with pytest.raises(InvalidSignature, match="no key"):
        verify_callback(IPN_BODY, IPN_SIGNATURE, [])


def test_documented_return_vector() -> None:
    assert return_signing_string(DOCUMENTED_RETURN) == (
        "cartId=cart_11111&customerEmail=email%40domain.com&respCode=G84718"
        "&respMessage=Authorised&respStatus=A&tranRef=TST2215201242166"
    )
    assert sign_return(DOCUMENTED_RETURN, KEY) == DOCUMENTED_RETURN["signature"]
    verify_return(DOCUMENTED_RETURN, [KEY])


def test_constructed_return_vector_with_spaces_and_hash() -> None:
    assert return_signing_string(CONSTRUCTED_RETURN) == (
        "cartId=cart+2%23&customerEmail=a.b%40example.com&respCode=G12345"
        "&respMessage=Insufficient+Funds&respStatus=D&tranRef=TST2215201242167"
    )
    verify_return(CONSTRUCTED_RETURN, [KEY])


def test_php_encoding_of_tilde_plus_and_arabic() -> None:
    assert php_http_build_query({"m": "a~b c+d", "n": "مرحبا"}) == (
        "m=a%7Eb+c%2Bd&n=%D9%85%D8%B1%D8%AD%D8%A8%D8%A7"
    )
    fields = {"cartId": "x~1", "respMessage": "تم", "respStatus": "A", "tranRef": "T1"}
    signed = {**fields, "signature": sign_return(fields, KEY)}
    verify_return(signed, [KEY])


def test_tampered_return_status_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        verify_return({**DOCUMENTED_RETURN, "respStatus": "D"}, [KEY])
    with pytest.raises(InvalidSignature, match="missing"):
        verify_return({k: v for k, v in DOCUMENTED_RETURN.items() if k != "signature"}, [KEY])


def test_zero_valued_fields_verify_under_either_sdk_rule() -> None:
    fields = {"cartId": "c1", "respCode": "0", "respStatus": "A", "tranRef": "T1"}
    keep_zero = {**fields, "signature": sign_return(fields, KEY)}
    drop_zero = {**fields, "signature": sign_return({**fields, "respCode": ""}, KEY)}
    verify_return(keep_zero, [KEY])
    verify_return(drop_zero, [KEY])


def test_a_plain_string_key_is_one_key_not_its_characters() -> None:
    # verify_callback(body, sig, server_key) is an easy call to write; iterating the string
    # would accept an HMAC made with any one character of the key.
    plain = KEY.get_secret_value()
    verify_callback(IPN_BODY, IPN_SIGNATURE, plain)
    verify_callback(IPN_BODY, IPN_SIGNATURE, KEY)
    for character in set(plain):
        with pytest.raises(InvalidSignature, match="mismatch"):
            verify_callback(IPN_BODY, sign_callback(IPN_BODY, character), plain)
    fields = {**DOCUMENTED_RETURN, "signature": sign_return(DOCUMENTED_RETURN, KEY)}
    verify_return(fields, plain)
    with pytest.raises(InvalidSignature, match="mismatch"):
        verify_return(
            {**DOCUMENTED_RETURN, "signature": sign_return(DOCUMENTED_RETURN, "S")}, plain
        )


@pytest.mark.parametrize("keys", ["", "  ", [""], [SecretStr("")], ["", " "]])
def test_a_blank_key_verifies_nothing(keys: object) -> None:
    # An unset variable read as "" must not accept an HMAC anyone can make with "".
    forged = sign_callback(IPN_BODY, "")
    with pytest.raises(InvalidSignature, match="no key configured"):
        verify_callback(IPN_BODY, forged, keys)  # type: ignore[arg-type]
    with pytest.raises(InvalidSignature, match="no key configured"):
        verify_return({**DOCUMENTED_RETURN, "signature": forged}, keys)  # type: ignore[arg-type]


def test_a_get_return_verifies_beside_the_merchant_s_own_query_parameters() -> None:
    # return_url=https://shop.example/thanks?order=42: PayTabs adds its fields to the query and
    # signs only those.
    signed = {**DOCUMENTED_RETURN, "signature": sign_return(DOCUMENTED_RETURN, KEY)}
    verify_return({**signed, "order": "42"}, [KEY])
    tampered = {**signed, "order": "42", "respStatus": "D"}
    with pytest.raises(InvalidSignature, match="mismatch"):
        verify_return(tampered, [KEY])
