"""PayTabs API errors: HTTP status, PayTabs ``code`` and message, raised by the engine."""

from __future__ import annotations


class ApiError(Exception):
    """An error answered as ``{"code": ..., "message": ..., "trace": ...}``."""

    def __init__(self, http_status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ApiError({self.http_status}, {self.code}, {self.message!r})"


def authentication_failed() -> ApiError:
    return ApiError(401, 1, "Authentication failed. Check authentication header.")


def not_json() -> ApiError:
    # Simulator choice: PayTabs' HTTP status and code for this message are undocumented.
    return ApiError(400, 3, "Request must be in JSON format with content type application/json")


def invalid_request(field: str) -> ApiError:
    return ApiError(400, 2, f"Invalid request: {field}")


def invalid_amount() -> ApiError:
    return ApiError(400, 2, "Invalid amount")


def duplicate_request() -> ApiError:
    return ApiError(409, 4, "Duplicate Request")


def cart_id_not_valid() -> ApiError:
    return ApiError(400, 101, "Cart ID not valid")


def description_not_valid() -> ApiError:
    return ApiError(400, 102, "Description not valid")


def email_not_valid() -> ApiError:
    return ApiError(400, 106, "Email not valid")


def transaction_not_found() -> ApiError:
    return ApiError(400, 113, "Transaction not found")


def invalid_currency() -> ApiError:
    return ApiError(400, 206, "Invalid currency code")


def invalid_token() -> ApiError:
    return ApiError(400, 209, "Invalid Merchant Token")


def amount_exceeds_remaining() -> ApiError:
    return ApiError(400, 301, "Amount exceeds the remaining amount")


def operation_not_allowed() -> ApiError:
    return ApiError(400, 302, "Operation not allowed for this transaction")
