# copy: COPY/ADD rules and flags: directory contents (not the directory) copied, trailing-slash destinations,
# several sources and globs, WORKDIR-relative destinations, --chown (names from the image's /etc/passwd),
# --chmod, --link, --exclude, --parents, .dockerignore (files/ignored.txt never reaches the build),
# ADD of a local .tar.gz (unpacked), ADD --chmod of a plain file and ADD --link --chown --exclude of a directory.
FROM busybox
WORKDIR /app
COPY files/ /app/files/
COPY files/hello.txt files/sub/*.txt ./many/
COPY --chown=daemon:daemon --chmod=0640 files/hello.txt owned.txt
COPY --chown=1:1 files/sub /app/chowned
COPY --link files/hello.txt /linked/hello.txt
COPY --exclude=*.md files/sub /app/excluded
COPY --parents files/sub/deeper/leaf.txt /app/parents/
ADD files/archive.tar.gz /app/unpacked/
ADD --chmod=0755 files/hello.txt /app/added.sh
ADD --link --chown=daemon --exclude=*.md files/sub /app/added-sub/
RUN test ! -e /app/files/ignored.txt && test ! -e /app/excluded/notes.md && ls -lnR /app
