"""The simulator's signer reproduces every test vector of docs/paytabs.md §12.3."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from paytabs_simulator.cards import CardInfo
from paytabs_simulator.config import Profile
from paytabs_simulator.records import PaymentResult, Transaction
from paytabs_simulator.signing import (
    php_urlencode,
    return_string_to_sign,
    sign_body,
    sign_return,
)
from paytabs_simulator.wire import json_bytes, transaction_object

from .support import KEY, independent_hmac

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


def test_documented_return_vector_is_reproduced() -> None:
    assert return_string_to_sign(DOCUMENTED_RETURN) == (
        "cartId=cart_11111&customerEmail=email%40domain.com&respCode=G84718"
        "&respMessage=Authorised&respStatus=A&tranRef=TST2215201242166"
    )
    assert sign_return(DOCUMENTED_RETURN, KEY) == DOCUMENTED_RETURN["signature"]


def test_return_vector_with_spaces_and_hash_is_reproduced() -> None:
    fields = {
        "acquirerMessage": "",
        "acquirerRRN": "",
        "cartId": "cart 2#",
        "customerEmail": "a.b@example.com",
        "respCode": "G12345",
        "respMessage": "Insufficient Funds",
        "respStatus": "D",
        "token": "",
        "tranRef": "TST2215201242167",
    }
    assert return_string_to_sign(fields) == (
        "cartId=cart+2%23&customerEmail=a.b%40example.com&respCode=G12345"
        "&respMessage=Insufficient+Funds&respStatus=D&tranRef=TST2215201242167"
    )
    assert sign_return(fields, KEY) == (
        "7b44bb98c9d4ef0353e1de794070859f6cd3aedfd01bb77e845aeac63f0ed89c"
    )


def test_ipn_vector_is_reproduced_by_signer() -> None:
    assert sign_body(IPN_BODY, KEY) == IPN_SIGNATURE
    assert independent_hmac(KEY, IPN_BODY) == IPN_SIGNATURE


def test_ipn_vector_bytes_are_what_the_simulator_serialises_for_the_same_data() -> None:
    tx = Transaction(
        tran_ref="TST2215201242166",
        profile=Profile(987654, KEY, merchant_id=1000),
        tran_type="Sale",
        tran_class="ECom",
        cart_id="cart_11111",
        cart_description="Order 1",
        cart_currency="SAR",
        cart_amount=Decimal(100),
        created_at=datetime(2022, 6, 1, 10, 0, tzinfo=UTC),
        result=PaymentResult("A", "G84718", "Authorised", datetime(2022, 6, 1, 10, 0, tzinfo=UTC)),
        card=CardInfo("Visa", "Credit", "Visa", "4111 11## #### 1111", 12, 2030),
    )
    body = json_bytes(transaction_object(tx, ipn_trace="IPNS0001.00000000.00000001"))
    assert body == IPN_BODY
    assert sign_body(body, KEY) == IPN_SIGNATURE


def test_spaced_json_of_the_same_data_does_not_verify() -> None:
    spaced = json.dumps(json.loads(IPN_BODY)).encode()
    assert sign_body(spaced, KEY) != IPN_SIGNATURE


def test_urlencoding_follows_php_not_python() -> None:
    assert php_urlencode("a b~c-d_e.f*") == "a+b%7Ec-d_e.f%2A"
    assert php_urlencode("مرحبا") == "%D9%85%D8%B1%D8%AD%D8%A8%D8%A7"


def test_empty_fields_and_signature_are_left_out_of_the_signed_string() -> None:
    assert return_string_to_sign({"b": "", "a": "1", "signature": "x"}) == "a=1"
