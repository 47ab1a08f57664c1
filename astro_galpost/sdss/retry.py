"""Retrying SkyServer queries and SAS downloads after transient failures.

The retry policy is urllib3's `urllib3.util.Retry`: it counts the attempts
(``total``, `~urllib3.util.Retry.increment`), holds the list of HTTP statuses
worth retrying (``status_forcelist``, :data:`TRANSIENT_STATUS`), computes the
exponential backoff (`~urllib3.util.Retry.get_backoff_time`, capped at
``backoff_max``) and parses ``Retry-After`` headers, in seconds or as an HTTP
date (`~urllib3.util.Retry.parse_retry_after`).

What urllib3 cannot do here is see the failures: astroquery talks to SDSS
through `requests` (which raises `requests.HTTPError`,
`requests.ConnectionError`, ...) and astropy's downloader (which raises
`urllib.error.HTTPError`), whose exceptions urllib3's classification
(connect/read errors of its own types, responses) does not know. Which
exception is transient is therefore decided by :func:`is_transient`, from the
HTTP status the exception carries (checked against the policy's
``status_forcelist``) or from its type; the exception is then handed to
`~urllib3.util.Retry.increment` as an "other" error.

Two choices differ from urllib3's own ``sleep``: the first retry already waits
``backoff`` seconds (urllib3 retries it at once, too soon for a SkyServer
refusing queries under load), and a ``Retry-After`` the server sends lengthens
the wait but never shortens it. The jitter is a fraction of the wait
(urllib3's ``backoff_jitter`` adds seconds).
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from astropy.utils.exceptions import AstropyUserWarning

__all__ = [
    "TRANSIENT_STATUS",
    "backoff_time",
    "call_with_retries",
    "is_transient",
    "polite_pause",
    "retry_after",
    "retry_policy",
]

_T = TypeVar("_T")

#: HTTP statuses worth retrying: request time-out (408), too early (425), too
#: many requests (429) and every server error (5xx: overload, gateway and
#: Cloudflare-style 52x errors).
TRANSIENT_STATUS = frozenset({408, 425, 429, *range(500, 600)})

_TRANSIENT_WORDS = ("too many requests", "timeout", "timed out", "temporarily unavailable",
                    "service unavailable", "server busy", "try again", "connection reset",
                    "connection aborted", "bad gateway", "gateway time")


def _sleep(seconds: float) -> None:
    """Indirection so tests can skip real waiting."""
    time.sleep(seconds)


def polite_pause(seconds: float) -> None:
    """Wait ``seconds`` between successful requests, to be polite to the server."""
    if seconds > 0:
        _sleep(seconds)


def retry_policy(retries: int = 4, backoff: float = 5.0, max_backoff: float = 300.0) -> Any:
    """The `urllib3.util.Retry` policy of the SDSS downloads.

    Parameters
    ----------
    retries : int, optional
        Retries after the first attempt (``total``).
    backoff, max_backoff : float, optional
        ``backoff_factor`` and ``backoff_max`` (seconds), see :func:`backoff_time`.

    Returns
    -------
    `urllib3.util.Retry`
        Counting every failure against ``total`` only, retrying any request
        method (SDSS queries are reads, even the POSTed cross-match), with
        :data:`TRANSIENT_STATUS` as ``status_forcelist``.
    """
    from urllib3.util import Retry

    return Retry(total=int(retries), connect=None, read=None, status=None, other=None,
                 allowed_methods=None, status_forcelist=TRANSIENT_STATUS,
                 backoff_factor=float(backoff), backoff_max=float(max_backoff),
                 respect_retry_after_header=True)


def backoff_time(policy: Any) -> float:
    """Seconds to wait before the retry that ``policy`` (after `~urllib3.util.Retry.increment`) allows.

    The k-th retry waits ``min(backoff_max, backoff_factor * 2**(k - 1))``:
    urllib3's `~urllib3.util.Retry.get_backoff_time` from the second retry on;
    the first waits ``backoff_factor`` where urllib3 would not wait at all.
    """
    if len(policy.history) == 1:
        return float(min(policy.backoff_max, policy.backoff_factor))
    return float(policy.get_backoff_time())


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is None:
        status = getattr(exc, "code", None)  # urllib.error.HTTPError
    try:
        return int(status) if status is not None else None
    except (TypeError, ValueError):
        return None


def is_transient(exc: BaseException, policy: Any = None) -> bool:
    """Whether a failed request is worth retrying (network trouble, overload, 5xx).

    Parameters
    ----------
    exc : Exception
        What the request raised.
    policy : `urllib3.util.Retry`, optional
        Whose ``status_forcelist`` decides about HTTP errors (default
        :func:`retry_policy`).

    Returns
    -------
    bool
        For an HTTP error (an exception with ``response.status_code`` or
        ``code``), whether the policy retries its status; otherwise true for
        connection errors and time-outs of `requests`, the standard library and
        `http.client`, and for messages such as "timed out" or "service unavailable".
    """
    status = _http_status(exc)
    if status is not None:
        policy = retry_policy() if policy is None else policy
        return bool(policy.is_retry("GET", status))
    try:
        import requests
    except ImportError:  # pragma: no cover - astroquery depends on requests
        requests = None
    if requests is not None and isinstance(exc, requests.RequestException):
        return isinstance(exc, (requests.ConnectionError, requests.Timeout,
                                requests.exceptions.ChunkedEncodingError,
                                requests.exceptions.ContentDecodingError))
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    import http.client
    import urllib.error

    if isinstance(exc, (urllib.error.URLError, http.client.HTTPException)):
        return True
    message = str(exc).lower()
    return any(word in message for word in _TRANSIENT_WORDS)


def retry_after(exc: BaseException, policy: Any = None) -> float | None:
    """Seconds asked for by the ``Retry-After`` header of an HTTP error, if it carries a valid one.

    The header (seconds, or an HTTP date) is read by
    `urllib3.util.Retry.parse_retry_after` of ``policy`` (default :func:`retry_policy`).
    """
    from urllib3.exceptions import InvalidHeader

    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "headers", None)
    value = headers.get("Retry-After") if headers else None
    if value is None:
        return None
    policy = retry_policy() if policy is None else policy
    try:
        return float(policy.parse_retry_after(str(value)))
    except InvalidHeader:
        return None


def _next_policy(policy: Any, exc: BaseException, what: str) -> Any:
    """``policy.increment`` for a failure, or `None` when the retries are spent."""
    from urllib3.exceptions import MaxRetryError

    try:
        return policy.increment(url=what, error=exc)
    except MaxRetryError:
        return None


def call_with_retries(query: Callable[[], _T], *, retries: int, backoff: float, max_backoff: float,
                      jitter: float, what: str) -> _T:
    """Call ``query()`` and retry it after transient failures, with exponential backoff.

    Parameters
    ----------
    query : callable
        The request; its result is returned.
    retries : int
        Retries after the first attempt.
    backoff, max_backoff : float
        The k-th retry waits ``min(max_backoff, backoff * 2**(k - 1))`` seconds
        (:func:`backoff_time`), or as long as the server's ``Retry-After`` asks
        if that is longer.
    jitter : float
        Each wait is stretched by a random fraction up to ``jitter``, so that
        parallel clients do not retry in step.
    what : str
        What is being requested, for the warning issued before each retry.

    Returns
    -------
    result
        What ``query()`` returned.

    Raises
    ------
    Exception
        The first error that is not transient (:func:`is_transient`), or the
        last one once the retries are spent.
    """
    policy = retry_policy(retries, backoff, max_backoff)
    while True:
        try:
            return query()
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised otherwise
            if not is_transient(exc, policy):
                raise
            policy = _next_policy(policy, exc, what)
            if policy is None:
                raise
            delay = backoff_time(policy)
            asked = retry_after(exc, policy)
            if asked is not None:
                delay = max(delay, asked)  # the server's wish wins over our schedule
            if jitter:
                delay *= 1.0 + random.uniform(0.0, jitter)  # spread clients out
            warnings.warn(f"{what} failed ({type(exc).__name__}: {exc}); retry "
                          f"{len(policy.history)}/{retries} in {delay:.1f} s", AstropyUserWarning,
                          stacklevel=3)
            _sleep(delay)
