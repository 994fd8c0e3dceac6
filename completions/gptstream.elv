
use builtin;
use str;

set edit:completion:arg-completer[gptstream] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'gptstream'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'gptstream'= {
            cand -m 'Model name sent to the server'
            cand --model 'Model name sent to the server'
            cand -s 'System message placed before the prompt'
            cand --system 'System message placed before the prompt'
            cand --max-tokens 'Upper bound on generated tokens (sent as max_tokens)'
            cand --temperature 'Sampling temperature'
            cand --api 'Which API to speak: chat (POST {base}/chat/completions) or responses (POST {base}/responses, OpenAI''s newer API, needed by models such as o3-pro)'
            cand --reasoning-effort 'Reasoning effort for reasoning models (e.g. minimal, low, medium, high); with --api responses, reasoning summaries are asked for too'
            cand --base-url 'Base URL of the OpenAI-compatible API; /chat/completions (or /responses) is appended'
            cand --api-key-file 'Read the API key from this file instead of OPENAI_API_KEY'
            cand -H 'Extra request header, ''Name: value'' (repeatable), e.g. for gateways or Azure''s api-key'
            cand --header 'Extra request header, ''Name: value'' (repeatable), e.g. for gateways or Azure''s api-key'
            cand --extra 'JSON object merged into the request body (response_format, seed, stop, ...)'
            cand -a 'Attach a file (image, PDF or text, by its contents), an image URL, or stdin (''-'') to the prompt (repeatable)'
            cand --attach 'Attach a file (image, PDF or text, by its contents), an image URL, or stdin (''-'') to the prompt (repeatable)'
            cand --schema 'The JSON Schema the answer must match: a file, inline JSON, or fields such as ''name, age int, tags [str], bio: a description''; a mismatch is exit 7'
            cand --schema-name 'The schema''s name, as the server is told it'
            cand -n 'Ask for N answers (choices); text mode prints them one after another, each after a header on stderr'
            cand --choices 'Ask for N answers (choices); text mode prints them one after another, each after a header on stderr'
            cand --choice 'In text mode, print only choice K (0-based) of -n N, as it streams'
            cand --reasoning 'Where reasoning text goes in text mode: stderr (dimmed on a terminal), or nowhere'
            cand --color 'When to use colour (dimmed reasoning and summary on stderr): auto is on a terminal unless NO_COLOR is set'
            cand --replay 'Decode a recorded SSE body from PATH (''-'' for stdin) instead of sending a request'
            cand --record 'Write each response body to PATH as received (de-chunked, decompressed, secrets as ***), as it arrives, for --replay or a bug report; a tool loop''s or chat''s last request wins'
            cand --messages 'Load a conversation (a JSON array of messages, or JSON Lines); the prompt, if any, is appended'
            cand --save 'Save the whole conversation, answer included, after a successful run (atomically)'
            cand --tools 'Tool definitions: an OpenAI tools array, one tool, or a bare function object (repeatable)'
            cand --tool-choice 'Which tool the model may call: auto, none, required, or a tool''s name'
            cand --tool-exec 'Run COMMAND (with sh -c) when the model calls NAME: arguments JSON on its stdin, its stdout back to the model, then the answer continues (repeatable)'
            cand --max-tool-rounds 'Most rounds of running tools and asking again before giving up (exit 6)'
            cand --max-tool-output 'Bytes of a tool''s output sent back to the model; the rest is cut, and that is said'
            cand --tool-timeout 'Seconds a --tool-exec command (or an MCP tool call) may run before it is stopped'
            cand --mcp 'Bring the tools of an MCP server: started with sh -c COMMAND and spoken to over stdio, or at an http(s):// URL over Streamable HTTP; NAME defaults to the server''s own name (repeatable)'
            cand --mcp-timeout 'Seconds an MCP server has to start, initialize and list its tools (else exit 8)'
            cand --tool-result 'Answer a tool call from --messages: ID=TEXT, or ID=@FILE to read the result from a file (repeatable)'
            cand --retries 'Retries after a refused or reset connection, 408, 409, 429 or 5xx, before any output (exponential backoff with jitter, honouring Retry-After); 0 turns them off'
            cand --proxy 'Proxy for the request (http://, socks5://...); overrides HTTPS_PROXY, HTTP_PROXY, ALL_PROXY; '''' connects directly'
            cand --cacert 'Trust the CA certificates in this PEM file instead of the built-in roots (a TLS-intercepting proxy''s CA)'
            cand --connect-timeout 'Seconds allowed to connect (TCP and TLS)'
            cand --first-byte-timeout 'Seconds allowed from sending the request to receiving the response headers'
            cand --idle-timeout 'Longest silence, in seconds, allowed between two reads of the stream'
            cand --timeout 'Seconds allowed for the whole request, stream included (off by default)'
            cand -p 'Use the settings of profile NAME from the config file (see --profiles)'
            cand --profile 'Use the settings of profile NAME from the config file (see --profiles)'
            cand --completions 'Print a completion script for SHELL and exit'
            cand --insecure-key-file 'Use --api-key-file even when other users can read it'
            cand --no-stream 'Ask for the whole answer at once (stream: false), for servers whose streaming is broken'
            cand -v 'Show the request URL and headers, the response status and headers on stderr (secrets as ***)'
            cand --verbose 'Show the request URL and headers, the response status and headers on stderr (secrets as ***)'
            cand --no-usage 'Do not ask for token usage (leaves out stream_options, for servers that reject it)'
            cand --usage 'Ask for token usage even when the config file says no_usage (the default)'
            cand --no-stdin 'Do not read stdin even when it is not a terminal'
            cand --dry-run 'Print the request (body on stdout, method, URL and headers on stderr) and send nothing'
            cand --chat 'Chat: read one message per line (a `you>` prompt on a terminal), keep the history; the default with no prompt when stdin and stdout are terminals'
            cand --json 'Write every event as one JSON object per line on stdout'
            cand -q 'No summary line on stderr (errors and warnings are still printed)'
            cand --quiet 'No summary line on stderr (errors and warnings are still printed)'
            cand --save-partial 'With --save: also save after a failed or interrupted answer, with the text that arrived'
            cand --no-parallel-tool-calls 'Ask for at most one tool call per turn (parallel_tool_calls: false)'
            cand --list-tools 'List the tools offered (NAME, SERVER, DESCRIPTION, tab-separated; with --json one object per line) and exit, asking the model nothing'
            cand --profiles 'List the config file''s profiles (name, base URL, model, API) and exit'
            cand --list-models 'List the server''s models (GET {base}/models), one id per line, and exit'
            cand --man 'Print the man page (roff) and exit'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
    ]
    $completions[$command]
}
