"""Graph's error answer, shared by the simulator's call-log functions and its call records."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web


def graph_error(status: int, code: str, message: str, request_id: str) -> web.Response:
    """Return a Graph-style error response."""
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": request_id,
            },
        }
    }
    return web.json_response(body, status=status, headers={"request-id": request_id})
