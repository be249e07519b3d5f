#!/bin/sh
# Prints the N (default 3) most frequent words of stdin, "COUNT WORD" per line, most frequent first.
set -eu
tr -cs 'A-Za-z' '\n' | tr 'A-Z' 'a-z' | grep -v '^$' | sort | uniq -c | sort -k1,1nr -k2,2 | head -n "${1:-3}" |
    awk '{print $1, $2}'
