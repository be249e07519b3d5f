# whiteouts: deleting files and directories from lower layers is recorded as whiteouts; a directory removed
# and re-created becomes opaque (its old contents stay hidden in the final image).
FROM busybox
RUN mkdir -p /data/old && echo a > /data/old/a && echo keep > /data/keep && echo gone > /data/gone
RUN rm /data/gone && rm -rf /data/old && mkdir /data/old && echo new > /data/old/new
RUN rm -rf /etc/hosts.d /home && echo done
