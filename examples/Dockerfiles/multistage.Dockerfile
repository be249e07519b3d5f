# multistage: named and numbered stages, COPY --from=<stage|index|image>, RUN --mount=type=bind,from=<stage>,
# --target, and two independent stages ("left", "right") that dockyard builds in parallel. The "unused" stage
# is never built for the default target.
FROM busybox AS base
RUN echo base > /base.txt

FROM base AS left
RUN echo left > /left.txt

FROM busybox AS right
RUN mkdir /out && echo right > /out/right.txt

FROM busybox AS unused
RUN exit 1

FROM base
COPY --from=left /left.txt /result/
COPY --from=2 /out/ /result/
COPY --from=busybox:latest /bin/busybox /result/busybox-copy
RUN --mount=type=bind,from=right,source=/out,target=/mnt cat /mnt/right.txt > /result/via-mount.txt
CMD ["ls", "/result"]
