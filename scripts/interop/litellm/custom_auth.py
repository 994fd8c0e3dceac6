"""Key check for the interop proxy: the master key passes, anything else is a 401.

Without a database LiteLLM answers a wrong key with 400 "No connected db." and a
missing one with 500; real deployments answer 401, which is what we test against.
"""

import os

from fastapi import Request
from litellm.proxy._types import ProxyErrorTypes, ProxyException, UserAPIKeyAuth

MASTER_KEY = os.environ.get("GPTSTREAM_INTEROP_KEY", "sk-interop-master-key")


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    if api_key == MASTER_KEY:
        return UserAPIKeyAuth(api_key=api_key)
    raise ProxyException(
        message="Authentication Error, invalid proxy key",
        type=ProxyErrorTypes.auth_error,
        param="api_key",
        code=401,
    )
