#!/usr/bin/env bash
# The shell of the CI examples, in one place: github-actions.yml and gitlab-ci.yml call `steps.sh STAGE` and
# nothing else, and tests/test_ci_examples.py runs these very stages.
#   login  `dockyard login` to $REGISTRY as $REGISTRY_USER, the password ($REGISTRY_PASSWORD) on stdin
#   build  build app/ as $IMAGE:$COMMIT, reusing the build cache at $IMAGE:buildcache (exported when PUSH=true)
#   test   run the app's tests inside the image
#   push   push $IMAGE:$COMMIT and $IMAGE:latest when PUSH=true (the CI files set it on the default branch only)
set -euo pipefail
cd "$(dirname "$0")"
: "${REGISTRY:?registry host, e.g. ghcr.io}" "${IMAGE:?image name, e.g. ghcr.io/OWNER/app}" "${COMMIT:?commit id}"
push=${PUSH:-false}
cache=$IMAGE:buildcache
case ${1:-} in
login)
    printf '%s' "${REGISTRY_PASSWORD:?}" | dockyard login -u "${REGISTRY_USER:?}" --password-stdin "$REGISTRY" ;;
build)
    # A branch that does not push reads the cache but leaves it as the default branch wrote it.
    export_cache=()
    [ "$push" != true ] || export_cache=(--cache-to "type=registry,ref=$cache,mode=max")
    # The app needs no network to build or test: RUN gets none, so the build is hermetic.
    dockyard build --progress plain --network none --cache-from "type=registry,ref=$cache" "${export_cache[@]}" \
        -t "$IMAGE:$COMMIT" app ;;
test)
    dockyard run --rm --network none --entrypoint /app/test.sh "$IMAGE:$COMMIT" ;;
push)
    if [ "$push" != true ]; then
        echo "not the default branch: nothing pushed"
        exit 0
    fi
    dockyard tag "$IMAGE:$COMMIT" "$IMAGE:latest"
    dockyard push "$IMAGE:$COMMIT"
    dockyard push "$IMAGE:latest" ;;
*)
    echo "usage: steps.sh login|build|test|push" >&2
    exit 2 ;;
esac
