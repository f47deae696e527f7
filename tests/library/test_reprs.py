"""What a repr of the library's requests and answers shows: it ends up in log lines and
tracebacks, so never a saved card's token or a customer's name, e-mail or phone."""

from __future__ import annotations

from paytabs_guard import Address, HostedPageRequest, Money, TokenChargeRequest
from paytabs_guard.adapters.paytabs.transformers import PayTabsTransaction

TOKEN = "2C4652BD67A3EE3BC6B291F587FC8BBA"
PERSON = Address(name="Huda Al-Saud", email="huda@example.sa", phone="+966501234567", country="SA")


def test_a_token_charge_shows_its_reference_not_its_token() -> None:
    charge = TokenChargeRequest(
        token=TOKEN, tran_ref="TST2014900000001", cart_id="c-1",
        amount=Money.of("10.00", "SAR"), description="Monthly",
    )  # fmt: skip
    shown = repr(charge)
    assert TOKEN not in shown
    assert "TST2014900000001" in shown
    assert charge.token == TOKEN  # hidden from the repr, not from the code


def test_an_address_names_what_is_given_not_the_values() -> None:
    shown = repr(HostedPageRequest(
        cart_id="c-2", amount=Money.of("1.00", "SAR"), description="x", customer=PERSON
    ))  # fmt: skip
    for value in ("Huda", "huda@example.sa", "+966501234567"):
        assert value not in shown
    assert "Address(given: name, email, phone, country)" in shown
    assert repr(Address()) == "Address(given: nothing)"
    assert PERSON.to_wire()["email"] == "huda@example.sa"


def test_a_transaction_hides_its_token_and_what_paytabs_sent_beyond_the_model() -> None:
    transaction = PayTabsTransaction.model_validate(
        {
            "tran_ref": "TST2014900000002", "cart_id": "c-3", "cart_currency": "SAR",
            "cart_amount": "10.00", "tran_type": "Sale", "token": TOKEN,
            "customer_details": {"email": "huda@example.sa", "phone": "+966501234567"},
        }
    )  # fmt: skip
    shown = repr(transaction)
    for secret in (TOKEN, "huda@example.sa", "+966501234567"):
        assert secret not in shown
    assert "token='[hidden]'" in shown
    assert "TST2014900000002" in shown
    assert transaction.token == TOKEN
    assert "token=None" in repr(transaction.model_copy(update={"token": None}))
