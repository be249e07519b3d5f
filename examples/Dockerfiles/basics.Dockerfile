# basics: every config instruction plus RUN/COPY on the busybox base.
# Shows ARG (global and per stage, --build-arg), ENV, LABEL, MAINTAINER, WORKDIR (creates the directory as a
# layer), USER (resolved at RUN time against the image's /etc/passwd), EXPOSE, VOLUME, STOPSIGNAL, HEALTHCHECK,
# SHELL, ENTRYPOINT and CMD. Build: dockyard build -f examples/Dockerfiles/basics.Dockerfile examples/Dockerfiles
ARG BASE=busybox:latest
FROM --platform=linux/amd64 ${BASE}
ARG GREETING=hello
ARG VERSION
MAINTAINER dockyard example <dockyard@example.invalid>
LABEL org.opencontainers.image.title="basics" version="${VERSION:-dev}"
ENV APP_HOME=/srv/app GREETING=${GREETING}
WORKDIR $APP_HOME
COPY files/hello.txt ./
RUN echo "$GREETING from $(pwd)" > greeting.txt && cat greeting.txt
RUN echo "app:x:1000:1000:app:/home/app:/bin/sh" >> /etc/passwd && echo "app:x:1000:" >> /etc/group && mkdir -p /home/app && chown app:app /home/app
USER app
RUN echo "$(id -un):$(id -gn)" > /tmp/id.txt && cat /tmp/id.txt
USER root
SHELL ["/bin/sh", "-e", "-c"]
RUN test "$(cat greeting.txt)" = "$GREETING from /srv/app"
EXPOSE 8080 9090/udp
VOLUME ["/srv/data"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 CMD ["cat", "/srv/app/greeting.txt"]
USER app
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat greeting.txt"]
