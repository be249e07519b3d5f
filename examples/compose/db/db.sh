#!/bin/sh
# One request per connection: PING, GET key, SET key value, INCR key. Values are files in /data (a volume).
read -r cmd key value
echo "$cmd $key" >&2  # the log: one line per request
case "$key" in *[!a-z0-9_]*) echo "ERR bad key"; exit 0;; esac
case "$cmd" in
    PING) echo "PONG from db $(hostname)";;
    GET) cat "/data/$key" 2>/dev/null || echo "(nil)";;
    SET) printf '%s\n' "$value" > "/data/$key" && echo OK;;
    INCR) n=$(($(cat "/data/$key" 2>/dev/null || echo 0) + 1)); echo "$n" > "/data/$key" && echo "$n";;
    *) echo "ERR unknown command";;
esac
