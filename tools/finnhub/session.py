"""The HTTP session under ``finnhub.Client``: where the key goes and how long a request may take.

finnhub-python keeps one ``requests`` session per client; these adjust it once, when the
gateway is made, so every endpoint method gets the same treatment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def bound_request_timeouts(client: Any, bound: Callable[[Any], Any]) -> None:
    """Every request of ``client``'s session gets ``bound(its timeout)`` as its timeout
    (finnhub-python passes ``DEFAULT_TIMEOUT``; ``requests``' ``get`` goes through ``request``)."""
    session = getattr(client, "_session", None)
    original = getattr(session, "request", None)
    if original is None:
        return

    def request(method, url, **kwargs):
        kwargs["timeout"] = bound(kwargs.get("timeout"))
        return original(method, url, **kwargs)

    session.request = request


def token_to_header(client: Any, api_key: str) -> None:
    """Move the key from the session's query parameters to the ``X-Finnhub-Token`` header.

    finnhub-python puts it in ``session.params``, so every URL (in urllib3's DEBUG log, in
    exception messages) would carry it. Finnhub accepts either.
    """
    session = getattr(client, "_session", None)
    params = getattr(session, "params", None)
    if isinstance(params, dict) and params.get("token"):
        token = params.pop("token")
        session.headers["X-Finnhub-Token"] = token
    elif session is not None and hasattr(session, "headers") and "X-Finnhub-Token" not in session.headers:
        session.headers["X-Finnhub-Token"] = api_key
