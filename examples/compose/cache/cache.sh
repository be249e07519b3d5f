#!/bin/sh
# One request per connection: PING, GET key, SET key value. Values live in the container's /tmp: lost on restart.
read -r cmd key value
echo "$cmd $key" >&2  # the log: one line per request
case "$key" in *[!a-z0-9_]*) echo "ERR bad key"; exit 0;; esac
case "$cmd" in
    PING) echo "PONG from cache $(hostname)";;
    GET) cat "/tmp/cache.$key" 2>/dev/null || echo "(nil)";;
    SET) printf '%s\n' "$value" > "/tmp/cache.$key" && echo OK;;
    *) echo "ERR unknown command";;
esac
