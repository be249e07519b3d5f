# add-url: ADD <url> with --checksum (the download is verified; a wrong checksum fails the build).
# Needs a server: dockyard build --build-arg URL=http://127.0.0.1:8000/hello.txt --build-arg SHA=sha256:…
FROM busybox
ARG URL
ARG SHA
ADD --checksum=${SHA} ${URL} /downloads/
ADD ${URL} /downloads/renamed.txt
RUN ls -l /downloads
