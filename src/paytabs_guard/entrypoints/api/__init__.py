"""The HTTP service: routes, and the request-hardening pieces they share."""
