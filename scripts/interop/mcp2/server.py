"""An MCP server on the official Python SDK 2 (MCPServer), for the interop suite: it speaks the
2026-07-28 revision (server/discover, metadata on every request, no session) as well as the
older ones. `server.py` serves stdio; `server.py http PORT` serves Streamable HTTP on 127.0.0.1.
GET /health says it is up. `greet` mirrors its argument into an Mcp-Param-Name header, which
the SDK checks against the body."""
import sys
from typing import Annotated

from pydantic import Field
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("interop-python-v2")


@mcp.custom_route("/health", methods=["GET"])
async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@mcp.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@mcp.tool()
def greet(name: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Name"})]) -> str:
    """Greets someone by name."""
    return f"Hello, {name}!"


@mcp.tool()
def broken() -> str:
    """Always fails."""
    raise ValueError("this tool is broken")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        mcp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        mcp.run()
