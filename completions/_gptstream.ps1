
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'gptstream' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'gptstream'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'gptstream' {
            [CompletionResult]::new('-m', '-m', [CompletionResultType]::ParameterName, 'Model name sent to the server')
            [CompletionResult]::new('--model', '--model', [CompletionResultType]::ParameterName, 'Model name sent to the server')
            [CompletionResult]::new('-s', '-s', [CompletionResultType]::ParameterName, 'System message placed before the prompt')
            [CompletionResult]::new('--system', '--system', [CompletionResultType]::ParameterName, 'System message placed before the prompt')
            [CompletionResult]::new('--max-tokens', '--max-tokens', [CompletionResultType]::ParameterName, 'Upper bound on generated tokens (sent as max_tokens)')
            [CompletionResult]::new('--temperature', '--temperature', [CompletionResultType]::ParameterName, 'Sampling temperature')
            [CompletionResult]::new('--api', '--api', [CompletionResultType]::ParameterName, 'Which API to speak: chat (POST {base}/chat/completions) or responses (POST {base}/responses, OpenAI''s newer API, needed by models such as o3-pro)')
            [CompletionResult]::new('--reasoning-effort', '--reasoning-effort', [CompletionResultType]::ParameterName, 'Reasoning effort for reasoning models (e.g. minimal, low, medium, high); with --api responses, reasoning summaries are asked for too')
            [CompletionResult]::new('--base-url', '--base-url', [CompletionResultType]::ParameterName, 'Base URL of the OpenAI-compatible API; /chat/completions (or /responses) is appended')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'Read the API key from this file instead of OPENAI_API_KEY')
            [CompletionResult]::new('-H', '-H ', [CompletionResultType]::ParameterName, 'Extra request header, ''Name: value'' (repeatable), e.g. for gateways or Azure''s api-key')
            [CompletionResult]::new('--header', '--header', [CompletionResultType]::ParameterName, 'Extra request header, ''Name: value'' (repeatable), e.g. for gateways or Azure''s api-key')
            [CompletionResult]::new('--extra', '--extra', [CompletionResultType]::ParameterName, 'JSON object merged into the request body (response_format, seed, stop, ...)')
            [CompletionResult]::new('-a', '-a', [CompletionResultType]::ParameterName, 'Attach a file (image, PDF or text, by its contents), an image URL, or stdin (''-'') to the prompt (repeatable)')
            [CompletionResult]::new('--attach', '--attach', [CompletionResultType]::ParameterName, 'Attach a file (image, PDF or text, by its contents), an image URL, or stdin (''-'') to the prompt (repeatable)')
            [CompletionResult]::new('--schema', '--schema', [CompletionResultType]::ParameterName, 'The JSON Schema the answer must match: a file, inline JSON, or fields such as ''name, age int, tags [str], bio: a description''; a mismatch is exit 7')
            [CompletionResult]::new('--schema-name', '--schema-name', [CompletionResultType]::ParameterName, 'The schema''s name, as the server is told it')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Ask for N answers (choices); text mode prints them one after another, each after a header on stderr')
            [CompletionResult]::new('--choices', '--choices', [CompletionResultType]::ParameterName, 'Ask for N answers (choices); text mode prints them one after another, each after a header on stderr')
            [CompletionResult]::new('--choice', '--choice', [CompletionResultType]::ParameterName, 'In text mode, print only choice K (0-based) of -n N, as it streams')
            [CompletionResult]::new('--reasoning', '--reasoning', [CompletionResultType]::ParameterName, 'Where reasoning text goes in text mode: stderr (dimmed on a terminal), or nowhere')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour (dimmed reasoning and summary on stderr): auto is on a terminal unless NO_COLOR is set')
            [CompletionResult]::new('--replay', '--replay', [CompletionResultType]::ParameterName, 'Decode a recorded SSE body from PATH (''-'' for stdin) instead of sending a request')
            [CompletionResult]::new('--record', '--record', [CompletionResultType]::ParameterName, 'Write each response body to PATH as received (de-chunked, decompressed, secrets as ***), as it arrives, for --replay or a bug report; a tool loop''s or chat''s last request wins')
            [CompletionResult]::new('--messages', '--messages', [CompletionResultType]::ParameterName, 'Load a conversation (a JSON array of messages, or JSON Lines); the prompt, if any, is appended')
            [CompletionResult]::new('--save', '--save', [CompletionResultType]::ParameterName, 'Save the whole conversation, answer included, after a successful run (atomically)')
            [CompletionResult]::new('--tools', '--tools', [CompletionResultType]::ParameterName, 'Tool definitions: an OpenAI tools array, one tool, or a bare function object (repeatable)')
            [CompletionResult]::new('--tool-choice', '--tool-choice', [CompletionResultType]::ParameterName, 'Which tool the model may call: auto, none, required, or a tool''s name')
            [CompletionResult]::new('--tool-exec', '--tool-exec', [CompletionResultType]::ParameterName, 'Run COMMAND (with sh -c) when the model calls NAME: arguments JSON on its stdin, its stdout back to the model, then the answer continues (repeatable)')
            [CompletionResult]::new('--max-tool-rounds', '--max-tool-rounds', [CompletionResultType]::ParameterName, 'Most rounds of running tools and asking again before giving up (exit 6)')
            [CompletionResult]::new('--max-tool-output', '--max-tool-output', [CompletionResultType]::ParameterName, 'Bytes of a tool''s output sent back to the model; the rest is cut, and that is said')
            [CompletionResult]::new('--tool-timeout', '--tool-timeout', [CompletionResultType]::ParameterName, 'Seconds a --tool-exec command (or an MCP tool call) may run before it is stopped')
            [CompletionResult]::new('--mcp', '--mcp', [CompletionResultType]::ParameterName, 'Bring the tools of an MCP server: started with sh -c COMMAND and spoken to over stdio, or at an http(s):// URL over Streamable HTTP; NAME defaults to the server''s own name (repeatable)')
            [CompletionResult]::new('--mcp-timeout', '--mcp-timeout', [CompletionResultType]::ParameterName, 'Seconds an MCP server has to start, initialize and list its tools (else exit 8)')
            [CompletionResult]::new('--tool-result', '--tool-result', [CompletionResultType]::ParameterName, 'Answer a tool call from --messages: ID=TEXT, or ID=@FILE to read the result from a file (repeatable)')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries after a refused or reset connection, 408, 409, 429 or 5xx, before any output (exponential backoff with jitter, honouring Retry-After); 0 turns them off')
            [CompletionResult]::new('--proxy', '--proxy', [CompletionResultType]::ParameterName, 'Proxy for the request (http://, socks5://...); overrides HTTPS_PROXY, HTTP_PROXY, ALL_PROXY; '''' connects directly')
            [CompletionResult]::new('--cacert', '--cacert', [CompletionResultType]::ParameterName, 'Trust the CA certificates in this PEM file instead of the built-in roots (a TLS-intercepting proxy''s CA)')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Seconds allowed to connect (TCP and TLS)')
            [CompletionResult]::new('--first-byte-timeout', '--first-byte-timeout', [CompletionResultType]::ParameterName, 'Seconds allowed from sending the request to receiving the response headers')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Longest silence, in seconds, allowed between two reads of the stream')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Seconds allowed for the whole request, stream included (off by default)')
            [CompletionResult]::new('-p', '-p', [CompletionResultType]::ParameterName, 'Use the settings of profile NAME from the config file (see --profiles)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Use the settings of profile NAME from the config file (see --profiles)')
            [CompletionResult]::new('--completions', '--completions', [CompletionResultType]::ParameterName, 'Print a completion script for SHELL and exit')
            [CompletionResult]::new('--insecure-key-file', '--insecure-key-file', [CompletionResultType]::ParameterName, 'Use --api-key-file even when other users can read it')
            [CompletionResult]::new('--no-stream', '--no-stream', [CompletionResultType]::ParameterName, 'Ask for the whole answer at once (stream: false), for servers whose streaming is broken')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Show the request URL and headers, the response status and headers on stderr (secrets as ***)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Show the request URL and headers, the response status and headers on stderr (secrets as ***)')
            [CompletionResult]::new('--no-usage', '--no-usage', [CompletionResultType]::ParameterName, 'Do not ask for token usage (leaves out stream_options, for servers that reject it)')
            [CompletionResult]::new('--usage', '--usage', [CompletionResultType]::ParameterName, 'Ask for token usage even when the config file says no_usage (the default)')
            [CompletionResult]::new('--no-stdin', '--no-stdin', [CompletionResultType]::ParameterName, 'Do not read stdin even when it is not a terminal')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print the request (body on stdout, method, URL and headers on stderr) and send nothing')
            [CompletionResult]::new('--chat', '--chat', [CompletionResultType]::ParameterName, 'Chat: read one message per line (a `you>` prompt on a terminal), keep the history; the default with no prompt when stdin and stdout are terminals')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Write every event as one JSON object per line on stdout')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No summary line on stderr (errors and warnings are still printed)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No summary line on stderr (errors and warnings are still printed)')
            [CompletionResult]::new('--save-partial', '--save-partial', [CompletionResultType]::ParameterName, 'With --save: also save after a failed or interrupted answer, with the text that arrived')
            [CompletionResult]::new('--no-parallel-tool-calls', '--no-parallel-tool-calls', [CompletionResultType]::ParameterName, 'Ask for at most one tool call per turn (parallel_tool_calls: false)')
            [CompletionResult]::new('--list-tools', '--list-tools', [CompletionResultType]::ParameterName, 'List the tools offered (NAME, SERVER, DESCRIPTION, tab-separated; with --json one object per line) and exit, asking the model nothing')
            [CompletionResult]::new('--profiles', '--profiles', [CompletionResultType]::ParameterName, 'List the config file''s profiles (name, base URL, model, API) and exit')
            [CompletionResult]::new('--list-models', '--list-models', [CompletionResultType]::ParameterName, 'List the server''s models (GET {base}/models), one id per line, and exit')
            [CompletionResult]::new('--man', '--man', [CompletionResultType]::ParameterName, 'Print the man page (roff) and exit')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
