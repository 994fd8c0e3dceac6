complete -c gptstream -s m -l model -d 'Model name sent to the server' -r
complete -c gptstream -s s -l system -d 'System message placed before the prompt' -r
complete -c gptstream -l max-tokens -d 'Upper bound on generated tokens (sent as max_tokens)' -r
complete -c gptstream -l temperature -d 'Sampling temperature' -r
complete -c gptstream -l api -d 'Which API to speak: chat (POST {base}/chat/completions) or responses (POST {base}/responses, OpenAI\'s newer API, needed by models such as o3-pro)' -r -f -a "chat\t'Chat Completions: /chat/completions'
responses\t'The Responses API: /responses'"
complete -c gptstream -l reasoning-effort -d 'Reasoning effort for reasoning models (e.g. minimal, low, medium, high); with --api responses, reasoning summaries are asked for too' -r
complete -c gptstream -l base-url -d 'Base URL of the OpenAI-compatible API; /chat/completions (or /responses) is appended' -r
complete -c gptstream -l api-key-file -d 'Read the API key from this file instead of OPENAI_API_KEY' -r -F
complete -c gptstream -s H -l header -d 'Extra request header, \'Name: value\' (repeatable), e.g. for gateways or Azure\'s api-key' -r
complete -c gptstream -l extra -d 'JSON object merged into the request body (response_format, seed, stop, ...)' -r
complete -c gptstream -s a -l attach -d 'Attach a file (image, PDF or text, by its contents), an image URL, or stdin (\'-\') to the prompt (repeatable)' -r
complete -c gptstream -l schema -d 'The JSON Schema the answer must match: a file, inline JSON, or fields such as \'name, age int, tags [str], bio: a description\'; a mismatch is exit 7' -r
complete -c gptstream -l schema-name -d 'The schema\'s name, as the server is told it' -r
complete -c gptstream -s n -l choices -d 'Ask for N answers (choices); text mode prints them one after another, each after a header on stderr' -r
complete -c gptstream -l choice -d 'In text mode, print only choice K (0-based) of -n N, as it streams' -r
complete -c gptstream -l reasoning -d 'Where reasoning text goes in text mode: stderr (dimmed on a terminal), or nowhere' -r -f -a "show\t'Reasoning to stderr'
hide\t'Reasoning dropped (still in --json)'"
complete -c gptstream -l color -d 'When to use colour (dimmed reasoning and summary on stderr): auto is on a terminal unless NO_COLOR is set' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set to anything but an empty string (no-color.org)'
always\t'Always, even into a pipe or with NO_COLOR'
never\t'Never: no escape sequence at all'"
complete -c gptstream -l replay -d 'Decode a recorded SSE body from PATH (\'-\' for stdin) instead of sending a request' -r -F
complete -c gptstream -l record -d 'Write each response body to PATH as received (de-chunked, decompressed, secrets as ***), as it arrives, for --replay or a bug report; a tool loop\'s or chat\'s last request wins' -r -F
complete -c gptstream -l messages -d 'Load a conversation (a JSON array of messages, or JSON Lines); the prompt, if any, is appended' -r -F
complete -c gptstream -l save -d 'Save the whole conversation, answer included, after a successful run (atomically)' -r -F
complete -c gptstream -l tools -d 'Tool definitions: an OpenAI tools array, one tool, or a bare function object (repeatable)' -r -F
complete -c gptstream -l tool-choice -d 'Which tool the model may call: auto, none, required, or a tool\'s name' -r
complete -c gptstream -l tool-exec -d 'Run COMMAND (with sh -c) when the model calls NAME: arguments JSON on its stdin, its stdout back to the model, then the answer continues (repeatable)' -r
complete -c gptstream -l max-tool-rounds -d 'Most rounds of running tools and asking again before giving up (exit 6)' -r
complete -c gptstream -l max-tool-output -d 'Bytes of a tool\'s output sent back to the model; the rest is cut, and that is said' -r
complete -c gptstream -l tool-timeout -d 'Seconds a --tool-exec command (or an MCP tool call) may run before it is stopped' -r
complete -c gptstream -l mcp -d 'Bring the tools of an MCP server: started with sh -c COMMAND and spoken to over stdio, or at an http(s):// URL over Streamable HTTP; NAME defaults to the server\'s own name (repeatable)' -r
complete -c gptstream -l mcp-timeout -d 'Seconds an MCP server has to start, initialize and list its tools (else exit 8)' -r
complete -c gptstream -l tool-result -d 'Answer a tool call from --messages: ID=TEXT, or ID=@FILE to read the result from a file (repeatable)' -r
complete -c gptstream -l retries -d 'Retries after a refused or reset connection, 408, 409, 429 or 5xx, before any output (exponential backoff with jitter, honouring Retry-After); 0 turns them off' -r
complete -c gptstream -l proxy -d 'Proxy for the request (http://, socks5://...); overrides HTTPS_PROXY, HTTP_PROXY, ALL_PROXY; \'\' connects directly' -r
complete -c gptstream -l cacert -d 'Trust the CA certificates in this PEM file instead of the built-in roots (a TLS-intercepting proxy\'s CA)' -r -F
complete -c gptstream -l connect-timeout -d 'Seconds allowed to connect (TCP and TLS)' -r
complete -c gptstream -l first-byte-timeout -d 'Seconds allowed from sending the request to receiving the response headers' -r
complete -c gptstream -l idle-timeout -d 'Longest silence, in seconds, allowed between two reads of the stream' -r
complete -c gptstream -l timeout -d 'Seconds allowed for the whole request, stream included (off by default)' -r
complete -c gptstream -s p -l profile -d 'Use the settings of profile NAME from the config file (see --profiles)' -r
complete -c gptstream -l completions -d 'Print a completion script for SHELL and exit' -r -f -a "bash\t''
elvish\t''
fish\t''
powershell\t''
zsh\t''"
complete -c gptstream -l insecure-key-file -d 'Use --api-key-file even when other users can read it'
complete -c gptstream -l no-stream -d 'Ask for the whole answer at once (stream: false), for servers whose streaming is broken'
complete -c gptstream -s v -l verbose -d 'Show the request URL and headers, the response status and headers on stderr (secrets as ***)'
complete -c gptstream -l no-usage -d 'Do not ask for token usage (leaves out stream_options, for servers that reject it)'
complete -c gptstream -l usage -d 'Ask for token usage even when the config file says no_usage (the default)'
complete -c gptstream -l no-stdin -d 'Do not read stdin even when it is not a terminal'
complete -c gptstream -l dry-run -d 'Print the request (body on stdout, method, URL and headers on stderr) and send nothing'
complete -c gptstream -l chat -d 'Chat: read one message per line (a `you>` prompt on a terminal), keep the history; the default with no prompt when stdin and stdout are terminals'
complete -c gptstream -l json -d 'Write every event as one JSON object per line on stdout'
complete -c gptstream -s q -l quiet -d 'No summary line on stderr (errors and warnings are still printed)'
complete -c gptstream -l save-partial -d 'With --save: also save after a failed or interrupted answer, with the text that arrived'
complete -c gptstream -l no-parallel-tool-calls -d 'Ask for at most one tool call per turn (parallel_tool_calls: false)'
complete -c gptstream -l list-tools -d 'List the tools offered (NAME, SERVER, DESCRIPTION, tab-separated; with --json one object per line) and exit, asking the model nothing'
complete -c gptstream -l profiles -d 'List the config file\'s profiles (name, base URL, model, API) and exit'
complete -c gptstream -l list-models -d 'List the server\'s models (GET {base}/models), one id per line, and exit'
complete -c gptstream -l man -d 'Print the man page (roff) and exit'
complete -c gptstream -s h -l help -d 'Print help (see more with \'--help\')'
complete -c gptstream -s V -l version -d 'Print version'
