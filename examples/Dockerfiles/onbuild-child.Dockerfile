# onbuild-child: FROM an image with ONBUILD triggers (build onbuild.Dockerfile as onbuild-parent first);
# they run before this file's own instructions and are not inherited further.
FROM onbuild-parent
RUN cat /onbuild/hello.txt /onbuild/ran.txt
