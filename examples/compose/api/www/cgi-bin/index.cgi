#!/bin/sh
# The api: counts visits in db (by service name) and reads the greeting from the cache, by its service name
# and by its links alias. Each backend names itself in its answer, so the body shows who answered what.
ask() { echo "$3" | nc -w 3 "$1" "$2"; }
[ "$(ask "$CACHE_ALIAS" "$CACHE_PORT" "GET greeting")" = "$GREETING" ] || ask cache "$CACHE_PORT" "SET greeting $GREETING" >/dev/null
printf 'Content-Type: text/plain\r\n\r\n'
echo "api $(hostname)"
echo "db via $DB_HOST: $(ask "$DB_HOST" "$DB_PORT" PING)"
echo "visits: $(ask "$DB_HOST" "$DB_PORT" "INCR visits")"
echo "cache via cache: $(ask cache "$CACHE_PORT" PING)"
echo "cache via $CACHE_ALIAS: $(ask "$CACHE_ALIAS" "$CACHE_PORT" PING)"
echo "greeting: $(ask "$CACHE_ALIAS" "$CACHE_PORT" "GET greeting")"
