complete -c gptstream -s m -l model -d 'Model name sent to the server' -r
complete -c gptstream -s s -l system -d 'System message placed before the prompt' -r
complete -c gptstream -l max-tokens -d 'Upper bound on generated tokens (sent as max_tokens)' -r
complete -c gptstream -l temperature -d 'Sampling temperature' -r
complete -c gptstream -l base-url -d 'Base URL of the OpenAI-compatible API; /chat/completions is appended' -r
complete -c gptstream -l api-key-file -d 'Read the API key from this file instead of OPENAI_API_KEY' -r -F
complete -c gptstream -s H -l header -d 'Extra request header, \'Name: value\' (repeatable), e.g. for gateways or Azure\'s api-key' -r
complete -c gptstream -l extra -d 'JSON object merged into the request body (response_format, seed, stop, ...)' -r
complete -c gptstream -l reasoning -d 'Where reasoning text goes in text mode: stderr (dimmed on a terminal), or nowhere' -r -f -a "show\t'Reasoning to stderr'
hide\t'Reasoning dropped (still in --json)'"
complete -c gptstream -l replay -d 'Decode a recorded SSE body from PATH (\'-\' for stdin) instead of sending a request' -r -F
complete -c gptstream -l connect-timeout -d 'Seconds allowed to connect (TCP and TLS)' -r
complete -c gptstream -l first-byte-timeout -d 'Seconds allowed from sending the request to receiving the response headers' -r
complete -c gptstream -l idle-timeout -d 'Longest silence, in seconds, allowed between two reads of the stream' -r
complete -c gptstream -l timeout -d 'Seconds allowed for the whole request, stream included (off by default)' -r
complete -c gptstream -l completions -d 'Print a completion script for SHELL and exit' -r -f -a "bash\t''
elvish\t''
fish\t''
powershell\t''
zsh\t''"
complete -c gptstream -l no-usage -d 'Do not ask for token usage (leaves out stream_options, for servers that reject it)'
complete -c gptstream -l no-stdin -d 'Do not read stdin even when it is not a terminal'
complete -c gptstream -l dry-run -d 'Print the request (body on stdout, method, URL and headers on stderr) and send nothing'
complete -c gptstream -l json -d 'Write every event as one JSON object per line on stdout'
complete -c gptstream -s q -l quiet -d 'No summary line on stderr (errors and warnings are still printed)'
complete -c gptstream -s h -l help -d 'Print help (see more with \'--help\')'
complete -c gptstream -s V -l version -d 'Print version'
