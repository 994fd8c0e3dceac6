"""Writes a tiny GGUF model for llama.cpp's llama-server whose answers are known in advance.

No model can be downloaded here, so we build one: a one-layer llama whose weights are set by
hand. Each token's embedding is one-hot, the feed-forward block is zero, and the output matrix
maps a token to its fixed successor, so the next token depends only on the last one:

    "\n" (end of the prompt) -> "Hello" -> " from" -> " llama" -> ".cpp!" -> <|im_end|>

The one attention head looks for the <tools> token that the chat template writes when the
request has tools; when it finds it, "\n" leads instead to a Hermes-style tool call:

    "\n" -> <tool_call> -> '\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
         -> </tool_call> -> <|im_end|>

The logit margins are large, so sampling settings do not change the answer. The chat template
is Qwen2.5's, whose <tool_call> format llama.cpp's parser recognises.

Usage: python make_model.py OUT.gguf
"""

import sys

import gguf
import numpy as np

ANSWER = ["Hello", " from", " llama", ".cpp!"]  # none may equal a byte token
TOOL_CALL = '\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'

CONTROL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
USER_DEFINED = [
    "<tools>",
    "</tools>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
]

CHAT_TEMPLATE = """\
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""


def bytes_to_unicode():
    """GPT-2's byte-level alphabet: every byte as one printable character."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


BYTE_CHAR = bytes_to_unicode()


def byte_level(text):
    return "".join(BYTE_CHAR[b] for b in text.encode("utf-8"))


def main(out_path):
    tokens, types = [], []

    def add(text, kind):
        tokens.append(text)
        types.append(kind)
        return len(tokens) - 1

    for b in range(256):
        add(BYTE_CHAR[b], gguf.TokenType.NORMAL)
    space_pair = add(byte_level("  "), gguf.TokenType.NORMAL)  # the one merge, "Ġ Ġ"
    ids = {t: add(t, gguf.TokenType.CONTROL) for t in CONTROL}
    ids.update({t: add(t, gguf.TokenType.USER_DEFINED) for t in USER_DEFINED})
    answer = [add(byte_level(t), gguf.TokenType.NORMAL) for t in ANSWER]
    tool_call_body = add(byte_level(TOOL_CALL), gguf.TokenType.NORMAL)
    assert space_pair == 256
    assert len(set(tokens)) == len(tokens), "token texts must be unique"

    vocab = len(tokens)
    embd = 288  # one-hot token dims, then: a constant 1, and the "tools seen" flag
    const_dim, flag_dim = embd - 3, embd - 1
    assert vocab <= const_dim
    newline = ord("\n")  # byte tokens come first, in byte order
    end = ids["<|im_end|>"]

    # Successor table: plain answer, tool call, and everything else ends the turn.
    successor = {t: end for t in range(vocab)}
    chain = [newline] + answer + [end]
    for a, b in zip(chain, chain[1:]):
        successor[a] = b
    successor[ids["<tool_call>"]] = tool_call_body
    successor[tool_call_body] = ids["</tool_call>"]
    successor[ids["</tool_call>"]] = end

    token_embd = np.zeros((vocab, embd), dtype=np.float32)
    token_embd[np.arange(vocab), np.arange(vocab)] = 1.0
    token_embd[:, const_dim] = 1.0

    strength = 10.0
    output = np.zeros((vocab, embd), dtype=np.float32)
    for t, nxt in successor.items():
        output[nxt, t] = strength
    # "\n" leans towards a tool call; the flag (tools in the prompt) tips it over, and is
    # never enough on its own to beat a token's successor.
    output[ids["<tool_call>"], newline] = strength * 0.5
    output[ids["<tool_call>"], flag_dim] = strength * 0.8

    # Attention: every query is the constant; only <tools> has a key, so the head attends to
    # <tools> when it is in the context and writes ~1 into the flag dimension. The signal sits in
    # the last rotary pair, which a huge rope base leaves unrotated.
    attn_q = np.zeros((embd, embd), dtype=np.float32)
    attn_k = np.zeros((embd, embd), dtype=np.float32)
    attn_v = np.zeros((embd, embd), dtype=np.float32)
    attn_o = np.zeros((embd, embd), dtype=np.float32)
    attn_q[embd - 1, const_dim] = 1.0
    attn_k[embd - 1, ids["<tools>"]] = 10.0
    attn_v[0, ids["<tools>"]] = 1.0
    norm_scale = np.sqrt(embd / 2.0)  # rms norm of a one-hot token plus the constant
    attn_o[flag_dim, 0] = 1.0 / norm_scale

    ffn = 32
    w = gguf.GGUFWriter(out_path, "llama")
    w.add_name("gptstream-interop-tiny")
    w.add_context_length(2048)
    w.add_embedding_length(embd)
    w.add_block_count(1)
    w.add_feed_forward_length(ffn)
    w.add_head_count(1)
    w.add_head_count_kv(1)
    w.add_rope_dimension_count(embd)
    w.add_rope_freq_base(1e30)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(vocab)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([f"{BYTE_CHAR[32]} {BYTE_CHAR[32]}"])
    w.add_bos_token_id(ids["<|endoftext|>"])
    w.add_eos_token_id(end)
    w.add_pad_token_id(ids["<|endoftext|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    ones = np.ones(embd, dtype=np.float32)
    w.add_tensor("token_embd.weight", token_embd)
    w.add_tensor("output_norm.weight", ones)
    w.add_tensor("output.weight", output)
    w.add_tensor("blk.0.attn_norm.weight", ones)
    w.add_tensor("blk.0.attn_q.weight", attn_q)
    w.add_tensor("blk.0.attn_k.weight", attn_k)
    w.add_tensor("blk.0.attn_v.weight", attn_v)
    w.add_tensor("blk.0.attn_output.weight", attn_o)
    w.add_tensor("blk.0.ffn_norm.weight", ones)
    w.add_tensor("blk.0.ffn_gate.weight", np.zeros((ffn, embd), dtype=np.float32))
    w.add_tensor("blk.0.ffn_up.weight", np.zeros((ffn, embd), dtype=np.float32))
    w.add_tensor("blk.0.ffn_down.weight", np.zeros((embd, ffn), dtype=np.float32))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main(sys.argv[1])
