"""HTTP to ``vllm serve`` endpoints with the standard library: one call, its errors sorted into the
server's fault (``ServerError``: try another server) and the request's (``RequestError``: HTTP 4xx,
every server would refuse it), and the bounded wait for a server to become healthy."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from .results import SamplingError


class ServerError(SamplingError):
    """A server refused, timed out or answered with an error (the server's fault: try another)."""


class RequestError(SamplingError):
    """A request every server would refuse (HTTP 4xx: a prompt too long, a bad parameter)."""


def call(url: str, path: str, body: dict | None = None, timeout: float = 60.0) -> dict:
    """GET (no body) or POST JSON to ``url + path``; the decoded answer (``{}`` when empty)."""
    import http.client

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url.rstrip("/") + path, data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            text = answer.read().decode()
        return json.loads(text) if text.strip() else {}
    except urllib.error.HTTPError as err:
        detail = " ".join(err.read().decode(errors="replace")[:300].split())
        kind = RequestError if 400 <= err.code < 500 and err.code not in (408, 429) else ServerError
        raise kind(f"{url}{path} answered HTTP {err.code}: {detail}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, http.client.HTTPException,
            json.JSONDecodeError) as err:
        reason = getattr(err, "reason", None) or type(err).__name__
        raise ServerError(f"{url}{path} did not answer ({reason})") from None


def wait_until_healthy(url: str, timeout: float, process=None) -> None:
    """Block until ``url``'s ``/health`` answers (bounded by ``timeout`` seconds); fail early when the
    server ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SamplingError(f"vllm_server: the server for {url} exited with code {process.returncode} "
                                "before it was ready (see its log)")
        try:
            call(url, "/health", timeout=5.0)
            return
        except ServerError:
            time.sleep(1.0)
    raise SamplingError(f"vllm_server: {url} was not healthy within {timeout:.0f} s")
