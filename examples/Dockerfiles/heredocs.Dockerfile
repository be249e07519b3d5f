# heredocs: RUN <<EOF (a script run by the shell), RUN <<EOF starting with #! (executed from /dev/pipes),
# RUN with several heredocs, and COPY <<EOF creating files inline (variables expanded unless quoted).
FROM busybox
ARG NAME=world
RUN <<EOF
set -e
mkdir -p /doc
echo "one" > /doc/one.txt
EOF
RUN <<'SCRIPT'
#!/bin/sh
echo "from a #! script: $0" > /doc/script.txt
SCRIPT
RUN cat <<A >/doc/a.txt && cat <<B >/doc/b.txt
first
A
second
B
COPY <<EOF /doc/hello.txt
hello ${NAME}
EOF
COPY <<"EOF" /doc/literal.txt
hello ${NAME}
EOF
