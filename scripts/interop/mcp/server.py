"""An MCP server built with the official Python SDK's FastMCP, for the interop suite: a few
tools, one of which always fails. `server.py` serves stdio; `server.py http PORT` serves
Streamable HTTP on 127.0.0.1."""
import sys

from mcp.server.fastmcp import FastMCP

mcp = FastMCP("interop-python")


@mcp.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
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
        mcp.run(transport="streamable-http")
    else:
        mcp.run()
