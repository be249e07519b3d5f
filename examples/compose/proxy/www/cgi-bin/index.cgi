#!/bin/sh
# The proxy's only route: forward GET / to the api (by its service name, $API_URL) and pass its answer on.
if body=$(wget -q -O - "$API_URL"); then  # not -T: Debian 1.35's wget crashes on it
    printf 'Content-Type: text/plain\r\n\r\n'
    echo "proxy $(hostname) -> $API_URL"
    printf '%s\n' "$body"
else
    printf 'Status: 502 Bad Gateway\r\nContent-Type: text/plain\r\n\r\n'
    echo "proxy $(hostname): $API_URL did not answer"
fi
