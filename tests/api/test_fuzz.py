"""Property-based fuzzing of every operation in /openapi.json: no input gives a 5xx.

Bodies, query and path parameters are drawn from the OpenAPI schema (valid, nearly valid and
arbitrary JSON), headers from valid and hostile values. The service runs over real HTTP with
the simulator behind it, so valid requests really create payments.

Schemathesis installs cleanly, but it plugs itself into every pytest run of the project and
drives its own synchronous HTTP client; a small Hypothesis generator over our own schema keeps
the suite in one event loop and needs no new dependency.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paytabs_guard.entrypoints.api.app import openapi_document

from .api_support import ADMIN_KEY, API_KEY, Service

pytestmark = pytest.mark.anyio

DOCUMENT = openapi_document()
COMPONENTS: Mapping[str, Any] = DOCUMENT["components"]["schemas"]  # type: ignore[index]
OPERATIONS = sorted(
    (path, method, operation)
    for path, item in DOCUMENT["paths"].items()  # type: ignore[attr-defined]
    for method, operation in item.items()
)

ASCII = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def from_schema(schema: Mapping[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values that mostly fit ``schema``; sometimes anything at all."""
    if depth > 4:
        return JSON
    if "$ref" in schema:
        return from_schema(COMPONENTS[str(schema["$ref"]).rsplit("/", 1)[-1]], depth + 1)
    if "anyOf" in schema:
        return st.one_of([from_schema(option, depth + 1) for option in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(list(schema["enum"])) | st.text(max_size=8)
    kind = schema.get("type")
    fitting: st.SearchStrategy[Any]
    if kind == "string":
        pattern = schema.get("pattern")
        fitting = st.text(max_size=int(schema.get("maxLength", 40)) + 2)
        if pattern:
            fitting = st.from_regex(pattern, fullmatch=True) | fitting
        fitting = fitting | st.sampled_from(["12.50", "0.001", "100", "SAR", "KWD", "JPY"])
    elif kind == "integer":
        fitting = st.integers(min_value=-5, max_value=500)
    elif kind == "number":
        fitting = st.floats(allow_nan=False, allow_infinity=False)
    elif kind == "boolean":
        fitting = st.booleans()
    elif kind == "array":
        fitting = st.lists(from_schema(schema.get("items", {}), depth + 1), max_size=3)
    elif kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        fitting = st.fixed_dictionaries(
            {name: from_schema(spec, depth + 1) for name, spec in properties.items()
             if name in required},
            optional={name: from_schema(spec, depth + 1) for name, spec in properties.items()
                      if name not in required},
        )  # fmt: skip
    else:
        fitting = JSON
    return st.one_of(fitting, fitting, fitting, JSON)


def parameters(operation: Mapping[str, Any], where: str) -> list[Mapping[str, Any]]:
    return [p for p in operation.get("parameters", []) if p["in"] == where]


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    path, method, operation = draw(st.sampled_from(OPERATIONS))
    for parameter in parameters(operation, "path"):
        value = draw(from_schema(parameter.get("schema", {})) | st.just("pay_0"))
        path = path.replace("{" + parameter["name"] + "}", quote(str(value), safe="") or "x")
    query = {
        p["name"]: draw(from_schema(p.get("schema", {})))
        for p in parameters(operation, "query")
        if draw(st.booleans())
    }
    valid = st.sampled_from([f"Bearer {API_KEY}", f"Bearer {ADMIN_KEY}"])
    headers = {
        "Authorization": draw(
            st.one_of(valid, valid, valid, st.sampled_from(["Bearer x", ""]), ASCII)
        ),
        "Idempotency-Key": draw(ASCII | st.uuids().map(str)),
    }
    kwargs: dict[str, Any] = {
        "params": {k: str(v) for k, v in query.items() if v is not None},
        "headers": {k: v for k, v in headers.items() if v},
    }
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None or method in ("post", "put", "patch"):
        schema = body["schema"] if body else {}
        example = VALID_BODIES.get(path.rsplit("/", 1)[-1])
        if example is not None and draw(st.booleans()):
            kwargs["json"] = draw(mutated(example))
        else:
            kwargs["json"] = draw(from_schema(schema))
    return method.upper(), path, kwargs


VALID_BODIES: dict[str, dict[str, Any]] = {
    "create": {"amount": "12.50", "currency": "SAR", "description": "Order 1"},
    "refund": {"amount": "1.00"},
    "capture": {},
}


def mutated(example: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The valid example, or it with one member dropped or replaced by anything."""
    keys = sorted(example) or ["amount"]
    return st.one_of(
        st.just(example),
        st.sampled_from(keys).map(lambda k: {n: v for n, v in example.items() if n != k}),
        st.tuples(st.sampled_from([*keys, "extra"]), JSON).map(lambda kv: example | {kv[0]: kv[1]}),
    )


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
async def test_no_request_gets_a_server_error(
    service: Service, request: tuple[str, str, dict[str, Any]]
) -> None:
    method, path, kwargs = request
    response = await service.anonymous.request(method, path, **kwargs)
    assert response.status_code < 500, (method, path, kwargs, response.text)
    assert response.headers["x-request-id"]
    if response.status_code >= 400 and not path.endswith("/return"):
        assert response.headers["content-type"] == "application/problem+json", response.text
