"""Every secret-derived value is compared with ``hmac.compare_digest``, never ``==``.

Two guards at two levels:

* a recording ``compare_digest`` swapped in for each verifier proves the verifier calls it with
  the MAC it computed, and that its answer (not some other comparison) decides the outcome;
* an AST check over ``src/`` refuses any ``==``/``!=``/``in`` whose operand is a computed MAC
  (a call that makes one) or a value named like one, so a new verifier cannot slip past.
"""

from __future__ import annotations

import ast
import base64
import hmac
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from paytabs_guard.adapters.paytabs.signature import (
    InvalidSignature,
    sign_callback,
    sign_return,
    verify_callback,
    verify_return,
)
from paytabs_guard.adapters.webhooks import standard
from paytabs_guard.entrypoints.api.auth import ApiKeys

SRC = Path(__file__).parents[3] / "src"
KEY = SecretStr("SGJNZ96JLG-JDMKHGRWT9-RWRK2KJNRJ")
BODY = b'{"tran_ref":"TST1","cart_id":"c1","cart_amount":"10.00"}'

Compared = list[tuple[object, object]]


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> Compared:
    """Record every ``hmac.compare_digest`` call and give the real answer."""
    real = hmac.compare_digest
    calls: Compared = []

    def recording(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    return calls


def answer_always(monkeypatch: pytest.MonkeyPatch, verdict: bool) -> None:
    """A ``compare_digest`` that says ``verdict`` for every MAC (32 raw bytes or 64 hex digits);
    other texts (the canonical base64 check of a webhook token) get the real answer."""
    real = hmac.compare_digest

    def fixed(a: Any, b: Any) -> bool:
        if (isinstance(a, bytes) and len(a) == 32) or (isinstance(a, str) and len(a) == 64):
            return verdict
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", fixed)


# --- PayTabs callback and browser-return signatures -----------------------------------------


def test_a_callback_signature_is_compared_with_compare_digest(compared: Compared) -> None:
    signature = sign_callback(BODY, KEY)
    verify_callback(BODY, signature.upper(), [KEY])
    assert (signature, signature) in compared  # the MAC computed from the raw bytes


def test_a_browser_return_signature_is_compared_with_compare_digest(compared: Compared) -> None:
    fields = {"cartId": "c1", "respCode": "G1", "respStatus": "A", "tranRef": "T1"}
    signature = sign_return(fields, KEY)
    verify_return({**fields, "signature": signature}, [KEY])
    assert (signature, signature) in compared


@pytest.mark.parametrize("verdict", [True, False])
def test_compare_digest_alone_decides_a_paytabs_signature(
    monkeypatch: pytest.MonkeyPatch, verdict: bool
) -> None:
    wrong = "0" * 64  # well-formed, but nobody's MAC
    answer_always(monkeypatch, verdict)
    if verdict:
        verify_callback(BODY, wrong, [KEY])
    else:
        with pytest.raises(InvalidSignature, match="mismatch"):
            verify_callback(BODY, sign_callback(BODY, KEY), [KEY])


# --- Standard Webhooks ------------------------------------------------------------------------

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def webhook_headers(signature: str) -> dict[str, str]:
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": signature,
    }


def test_a_standard_webhook_signature_is_compared_with_compare_digest(
    compared: Compared,
) -> None:
    signature = standard.sign("msg_1", 1700000000, BODY, SECRET)
    standard.verify(
        webhook_headers(signature), BODY, [SECRET], tolerance_seconds=300, now=1700000000
    )
    digest = base64.b64decode(signature.removeprefix("v1,"))
    assert (digest, digest) in compared


@pytest.mark.parametrize("verdict", [True, False])
def test_compare_digest_alone_decides_a_standard_webhook(
    monkeypatch: pytest.MonkeyPatch, verdict: bool
) -> None:
    good = standard.sign("msg_1", 1700000000, BODY, SECRET)
    wrong = "v1," + base64.b64encode(bytes(32)).decode()
    answer_always(monkeypatch, verdict)
    if verdict:
        standard.verify(
            webhook_headers(wrong), BODY, [SECRET], tolerance_seconds=300, now=1700000000
        )
    else:
        with pytest.raises(standard.WebhookVerificationError, match="no_matching_signature"):
            standard.verify(
                webhook_headers(good), BODY, [SECRET], tolerance_seconds=300, now=1700000000
            )


# --- API keys ---------------------------------------------------------------------------------


def test_an_api_key_is_compared_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = ApiKeys([SecretStr("merchant-key-1")], [])
    answer_always(monkeypatch, False)
    assert keys.identify("merchant-key-1") is None
    answer_always(monkeypatch, True)
    assert keys.identify("any other key") is not None


# --- no == on a MAC anywhere in src/ ----------------------------------------------------------

#: Calls that make a MAC or a secret digest, and names that hold one.
MAC_CALLS = {"new", "digest", "hexdigest", "_hmac_hex", "_digest", "sign", "sign_callback",
             "sign_return"}  # fmt: skip
MAC_NAMES = re.compile(r"signature|digest|hmac|^_?mac$|^candidate", re.I)
EQUALITY = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)


def _name_of(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _looks_like_a_mac(node: ast.expr) -> bool:
    if isinstance(node, ast.Call):
        name = _name_of(node.func)
        return name in MAC_CALLS
    name = _name_of(node)
    # an UPPER_CASE name is a constant (a size, a list of algorithms), never a received value
    return name is not None and not name.isupper() and bool(MAC_NAMES.search(name))


def equality_on_macs(tree: ast.AST) -> Iterator[ast.Compare]:
    """Comparisons with ``==``, ``!=``, ``in`` or ``not in`` that touch a MAC."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Compare)
            and any(isinstance(op, EQUALITY) for op in node.ops)
            and any(_looks_like_a_mac(operand) for operand in [node.left, *node.comparators])
        ):
            yield node


def offenders_in(source: str) -> list[int]:
    return [node.lineno for node in equality_on_macs(ast.parse(source))]


def test_no_mac_is_compared_with_an_equality_operator_in_src() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{line}"
        for path in sorted(SRC.rglob("*.py"))
        for line in offenders_in(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "source",
    [
        "ok = _hmac_hex(key, message) == candidate",
        "ok = expected != candidate",
        "ok = hmac.new(k, m, sha256).hexdigest() == given",
        "ok = known == digest",
        "ok = mac != received",
        "ok = self._digest(presented) == stored",
        "ok = signature in accepted",
        "ok = self.signature == header",
    ],
)
def test_the_ast_check_sees_each_way_of_comparing_a_mac(source: str) -> None:
    assert offenders_in(source) == [1]


def test_the_ast_check_lets_compare_digest_and_unrelated_comparisons_pass() -> None:
    source = (
        "ok = hmac.compare_digest(_hmac_hex(key, message), candidate)\n"
        "short = len(digest) != 32\n"
        "v1 = version != 'v1'\n"
        "drop = key != 'signature'\n"
        "size = len(digest) != _DIGEST_BYTES\n"
        "known = name not in SUPPORTED_SIGNATURE_ALGORITHMS\n"
    )
    assert offenders_in(source) == []
