"""The alternatives a user would reach for, each reading direct-routing day windows from the
simulator: the official msgraph-sdk and dlt's REST client. Run by bench.py with the
interpreter of ``.venv-bench`` (benchmarks/requirements-peers.txt); prints its counters."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from common import day_windows, function_path, token

FUNCTION = "getDirectRoutingCalls"


async def msgraph_sdk(env: dict[str, str], start: str, end: str, out: Path) -> dict[str, int]:
    """msgraph-sdk: the getDirectRoutingCalls request builder, typed rows, paging by
    odata_next_link, each row written back as JSON with kiota's serializer."""
    from kiota_abstractions.authentication import (
        AccessTokenProvider,
        AllowedHostsValidator,
        BaseBearerTokenAuthenticationProvider,
    )
    from kiota_serialization_json.json_serialization_writer import JsonSerializationWriter
    from msgraph import GraphRequestAdapter, GraphServiceClient

    bearer = await token(env)

    class Static(AccessTokenProvider):  # type: ignore[misc]
        async def get_authorization_token(self, uri: str, context: Any = None) -> str:
            return bearer

        def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
            return AllowedHostsValidator([])

    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(Static()))
    adapter.base_url = f"{env['GRAPH_ENDPOINT']}/v1.0"
    client = GraphServiceClient(request_adapter=adapter)
    rows = requests = 0
    records = client.communications.call_records
    for a, b in day_windows(start, end):
        builder = records.microsoft_graph_call_records_get_direct_routing_calls_with_from_date_time_with_to_date_time(
            datetime.fromisoformat(a.replace("Z", "+00:00")),
            datetime.fromisoformat(b.replace("Z", "+00:00")),
        )
        # The SDK's URL template drops the comma between the parameters: give it the URL.
        url: str | None = f"{env['GRAPH_ENDPOINT']}/v1.0/" + function_path(FUNCTION, a, b)
        with open(out / f"{a[:10]}.jsonl", "w", encoding="utf-8") as file:  # noqa: ASYNC230
            while url:
                requests += 1
                page = await builder.with_url(url).get()
                for row in page.value or []:
                    writer = JsonSerializationWriter()
                    writer.write_object_value(None, row)
                    file.write(writer.get_serialized_content().decode() + "\n")
                rows += len(page.value or [])
                url = page.odata_next_link
    return {"rows": rows, "requests": requests, "throttled": -1}


def dlt_rest(env: dict[str, str], start: str, end: str, out: Path) -> dict[str, int]:
    """dlt: rest_api_source with the JSON-link paginator on @odata.nextLink, filesystem
    destination writing JSONL, with the settings that keep rows closest to Graph's."""
    os.environ.update(
        RUNTIME__DLTHUB_TELEMETRY="false",
        SCHEMA__NAMING="direct",
        DATA_WRITER__DISABLE_COMPRESSION="true",
        LOAD__DELETE_COMPLETED_JOBS="true",
    )
    import dlt
    from dlt.sources.rest_api import rest_api_source

    bearer = asyncio.run(token(env))
    windows = day_windows(start, end)
    source = rest_api_source(
        {
            "client": {
                "base_url": f"{env['GRAPH_ENDPOINT']}/v1.0/",
                "auth": {"type": "bearer", "token": bearer},
                "paginator": {"type": "json_link", "next_url_path": "'@odata.nextLink'"},
            },
            "resources": [
                {
                    "name": f"direct_routing_{a[:10].replace('-', '')}",
                    "endpoint": {
                        "path": function_path(FUNCTION, a, b),
                        "data_selector": "value",
                    },
                }
                for a, b in windows
            ],
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench",
        destination=dlt.destinations.filesystem(bucket_url=out.as_uri()),
        dataset_name="calls",
        pipelines_dir=str(out / ".dlt"),
    )
    pipeline.run(source, loader_file_format="jsonl")
    rows = sum(p.read_bytes().count(b"\n") for p in out.rglob("*.jsonl") if ".dlt" not in p.parts)
    return {"rows": rows, "requests": -1, "throttled": -1}


def main() -> None:
    tool, env_json, start, end = sys.argv[1:5]
    env = json.loads(env_json)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        if tool == "msgraph-sdk":
            counts = asyncio.run(msgraph_sdk(env, start, end, out))
        elif tool == "dlt":
            counts = dlt_rest(env, start, end, out)
        else:
            raise SystemExit(f"unknown tool {tool}")
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
