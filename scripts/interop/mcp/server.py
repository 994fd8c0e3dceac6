"""An MCP server built with the official Python SDK's FastMCP, for the interop suite: a few
tools, one of which always fails, one of which logs as it works. `server.py` serves stdio;
`server.py http PORT` serves Streamable HTTP on 127.0.0.1 (answers as event streams), and
`server.py http PORT json` the same with plain JSON answers. GET /health says it is up."""
import sys

from mcp.server.fastmcp import Context, FastMCP
from starlette.requests import Request
from starlette.responses import PlainTextResponse

mcp = FastMCP("interop-python")


@mcp.custom_route("/health", methods=["GET"])
async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@mcp.tool()
async def add(a: int, b: int, ctx: Context) -> int:
    """Adds two integers."""
    # A log notification in the middle of the call: on HTTP, an event before the answer.
    await ctx.info(f"adding {a} and {b}")
    return a + b


@mcp.tool()
def shout(text: str) -> str:
    """Upper-cases a text."""
    return text.upper()


@mcp.tool()
def broken() -> str:
    """Always fails."""
    raise ValueError("this tool is broken")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        mcp.settings.host = "127.0.0.1"
        mcp.settings.port = int(sys.argv[2])
        mcp.settings.json_response = sys.argv[3:] == ["json"]
        mcp.run(transport="streamable-http")
    else:
        mcp.run()
