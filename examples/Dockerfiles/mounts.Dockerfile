# mounts: RUN --mount=type=cache (kept between builds, not in the image), type=tmpfs, type=secret (needs
# --secret id=token,src=FILE), type=bind from the context, and RUN --network=none (only loopback) with the
# default --security=sandbox spelled out.
FROM busybox
RUN --mount=type=cache,target=/cache echo run >> /cache/runs && wc -l < /cache/runs > /cache-count.txt
RUN --mount=type=tmpfs,target=/scratch,size=1m echo tmp > /scratch/x && test ! -e /scratch-leak
RUN --mount=type=secret,id=token,required=true test -s /run/secrets/token && wc -c < /run/secrets/token > /secret-size.txt
RUN --mount=type=secret,id=token,env=TOKEN test -n "$TOKEN"
RUN --mount=type=bind,source=files,target=/ctx cp /ctx/hello.txt /from-bind.txt
RUN --network=none --security=sandbox ls /sys/class/net > /net.txt
