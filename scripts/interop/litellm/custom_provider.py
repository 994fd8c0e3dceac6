"""Models that LiteLLM's mock_response cannot express, as a LiteLLM custom provider.

`tools` streams one tool call per request in fragments (id without "call_",
arguments split mid-token); `midstream-error` streams a few words and then fails;
`text` streams a short answer with usage (mock_response answers a streaming
/v1/responses request with HTTP 500 in 1.100.x; this one streams there too);
`schema-echo` answers, as JSON, which response_format reached the provider.
LiteLLM turns these chunks into its own SSE stream, for either API.
"""

import json

from litellm import CustomLLM
from litellm.llms.custom_llm import CustomLLMError

WEATHER_ARGS = json.dumps({"city": "Paris", "unit": "celsius"})


def _chunk(text="", tool_use=None, finish_reason="", usage=None):
    return {
        "text": text,
        "tool_use": tool_use,
        "is_finished": bool(finish_reason),
        "finish_reason": finish_reason,
        "usage": usage,
        "index": 0,
    }


def _tool_call_chunks():
    pieces = [WEATHER_ARGS[:5], WEATHER_ARGS[5:13], WEATHER_ARGS[13:]]
    for n, piece in enumerate(pieces):
        yield _chunk(
            tool_use={
                "id": "toolu_interop_1" if n == 0 else None,
                "type": "function",
                "function": {"name": "get_weather" if n == 0 else None, "arguments": piece},
                "index": 0,
            }
        )
    yield _chunk(
        finish_reason="tool_calls",
        usage={"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
    )


def _midstream_error_chunks():
    for word in ["partial ", "answer ", "then "]:
        yield _chunk(text=word)
    raise CustomLLMError(status_code=500, message="interop: upstream went away mid-stream")


def _text_chunks():
    for piece in ["Hello ", "from ", "LiteLLM's ", "Responses ", "bridge."]:
        yield _chunk(text=piece)
    yield _chunk(
        finish_reason="stop",
        usage={"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
    )


def _schema_echo_chunks(optional_params):
    response_format = (optional_params or {}).get("response_format") or {}
    if hasattr(response_format, "model_dump"):
        response_format = response_format.model_dump()
    json_schema = response_format.get("json_schema") or {}
    answer = json.dumps(
        {
            "type": response_format.get("type", "none"),
            "name": json_schema.get("name", ""),
            "strict": bool(json_schema.get("strict")),
        }
    )
    yield _chunk(text=answer[: len(answer) // 2])
    yield _chunk(text=answer[len(answer) // 2 :])
    yield _chunk(finish_reason="stop")


def _chunks(model, optional_params=None):
    if model.endswith("schema-echo"):
        return _schema_echo_chunks(optional_params)
    if model.endswith("text"):
        return _text_chunks()
    if model.endswith("tools"):
        return _tool_call_chunks()
    if model.endswith("midstream-error"):
        return _midstream_error_chunks()
    raise CustomLLMError(status_code=404, message=f"interop: no model {model}")


class InteropProvider(CustomLLM):
    def streaming(self, model, *args, **kwargs):
        yield from _chunks(model, kwargs.get("optional_params"))

    async def astreaming(self, model, *args, **kwargs):
        for chunk in _chunks(model, kwargs.get("optional_params")):
            yield chunk


handler = InteropProvider()
