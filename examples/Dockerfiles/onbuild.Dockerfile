# onbuild: ONBUILD triggers are stored in the image config and run right after FROM in a child build
# (see onbuild-child.Dockerfile, built from the image this one is tagged as: onbuild-parent). Also
# HEALTHCHECK --start-interval (the flag basics.Dockerfile leaves out, as buildah lacks it).
FROM busybox
ONBUILD COPY files/hello.txt /onbuild/hello.txt
ONBUILD RUN echo triggered > /onbuild/ran.txt
HEALTHCHECK --start-interval=2s --interval=1m CMD ["true"]
