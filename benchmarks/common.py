"""What the benchmark's tools share: a token from the local identity endpoint, day windows,
the path of a call-log function's window."""

from __future__ import annotations

from datetime import datetime, timedelta

import aiohttp


async def token(env: dict[str, str]) -> str:
    """A bearer token for the simulator from the local managed-identity endpoint."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            env["IDENTITY_ENDPOINT"],
            params={"api-version": "2019-08-01", "resource": env["GRAPH_ENDPOINT"]},
            headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
        ) as response,
    ):
        return str((await response.json())["access_token"])


def day_windows(start: str, end: str) -> list[tuple[str, str]]:
    """``[start, end)`` cut into day windows, as Graph parameters (``…Z``)."""
    a = datetime.fromisoformat(start.replace("Z", "+00:00"))
    b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    out = []
    while a < b:
        nxt = min(b, a + timedelta(days=1))
        out.append((a.strftime("%Y-%m-%dT%H:%M:%SZ"), nxt.strftime("%Y-%m-%dT%H:%M:%SZ")))
        a = nxt
    return out


def function_path(function: str, start: str, end: str) -> str:
    """Path (below the version) of ``function``'s window ``[start, end)``, as Graph takes it."""
    return f"communications/callRecords/{function}(fromDateTime={start},toDateTime={end})"
