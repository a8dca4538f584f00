#!/usr/bin/env bash
# Build the Pulumi CLI from its Go module into a cache outside the repository, reuse the build
# when it is already there, and print the bin directory to put on PATH.
#
#   scripts/build-engine.sh                 # build (or reuse); prints e.g. ~/.cache/stageline/pulumi-v3.274.1/bin
#   PATH="$(scripts/build-engine.sh):$PATH" python -m pytest tests/engine
#
# Environment:
#   STAGELINE_PULUMI_VERSION         the pinned engine version (default below)
#   STAGELINE_ENGINE_CACHE           the cache root (default ${XDG_CACHE_HOME:-~/.cache}/stageline)
#   STAGELINE_LANGUAGE_HOST_VERSION  the Python language host's pseudo-version, where a module proxy serves it
#
# The CLI is built from the committed module in scripts/engine: go.mod pins the version and every
# dependency, go.sum holds their hashes, and the go command refuses a module whose content does
# not match (-mod=readonly: nothing is resolved anew). The workflows install the CLI this way, so
# what runs in CI is checked against hashes in the repository, not downloaded as a script.
set -euo pipefail

VERSION="${STAGELINE_PULUMI_VERSION:-v3.274.1}"
LANGUAGE_HOST_VERSION="${STAGELINE_LANGUAGE_HOST_VERSION:-}"
CACHE_ROOT="${STAGELINE_ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stageline}"
DEST="$CACHE_ROOT/pulumi-$VERSION"
BIN="$DEST/bin"
STAMP="$VERSION ${LANGUAGE_HOST_VERSION:--}"
# pkg/v3's go.mod replaces this published module with a fork; a build outside it must repeat that.
CLIPBOARD_REPLACE="github.com/atotto/clipboard=github.com/tgummerer/clipboard@v0.0.0-20241001131231-d02d263e614e"

log() { printf 'build-engine: %s\n' "$*" >&2; }

if [ -x "$BIN/pulumi" ] && [ -f "$DEST/.complete" ] && [ "$(cat "$DEST/.complete")" = "$STAMP" ]; then
  log "reusing $BIN"
  printf '%s\n' "$BIN"
  exit 0
fi

command -v go >/dev/null || { log "go is not on PATH: install Go >= 1.26, or a Pulumi release"; exit 2; }

started=$(date +%s)
WORK="$(mktemp -d "${TMPDIR:-/tmp}/stageline-engine.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/bin"
mkdir -p "$STAGE"

LDFLAGS="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$VERSION"
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

# A throwaway module: `go install pkg@version` refuses pkg/v3 because its go.mod has replace lines.
new_module() {  # DIR NAME REQUIREMENT...
  local dir="$1" name="$2"
  shift 2
  mkdir -p "$dir"
  (
    cd "$dir"
    go mod init "stageline.invalid/$name" >/dev/null 2>&1
    printf 'package %s\n' "$name" >doc.go
    go mod edit -replace "$CLIPBOARD_REPLACE"
    go get "$@" >&2
  )
}

# --- the CLI -------------------------------------------------------------------------------
MODULE_DIR="$(cd "$(dirname "$0")/engine" && pwd)"
if ! grep -q "github.com/pulumi/pulumi/pkg/v3 $VERSION " "$MODULE_DIR/go.mod"; then
  log "$MODULE_DIR/go.mod does not pin pkg/v3 $VERSION: refresh it (docs/development.md)"
  exit 2
fi
mkdir -p "$WORK/cli"
cp "$MODULE_DIR/go.mod" "$MODULE_DIR/go.sum" "$MODULE_DIR/doc.go" "$WORK/cli/"
log "building pulumi $VERSION from $MODULE_DIR (a cold build takes about 5 minutes on 2 cores)"
(cd "$WORK/cli" && GOFLAGS="-mod=readonly -buildvcs=false" \
  go build -trimpath -ldflags "$LDFLAGS" -o "$STAGE/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)

# --- the Python language host ---------------------------------------------------------------
# Its module has no tags of its own, so it is taken at a pseudo-version (the sdk/v3 tag's commit).
# The module proxy this project's CI reaches does not serve it; without it the engine tests use
# their stand-in host (tests/standin/langhost), which runs programs through the SDK's own shim.
if [ -n "$LANGUAGE_HOST_VERSION" ]; then
  log "building pulumi-language-python at $LANGUAGE_HOST_VERSION"
  new_module "$WORK/lang" language \
    "github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3@$LANGUAGE_HOST_VERSION" \
    "github.com/pulumi/pulumi/sdk/v3@$VERSION" "github.com/pulumi/pulumi/pkg/v3@$VERSION"
  (cd "$WORK/lang" && go build -trimpath -ldflags "$LDFLAGS" -o "$STAGE/pulumi-language-python" \
    github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3)
else
  log "no STAGELINE_LANGUAGE_HOST_VERSION: built without pulumi-language-python"
fi

# The shims the Python host runs programs and dynamic providers through come with sdk/v3.
SDK_DIR="$(cd "$WORK/cli" && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)"
install -m 0755 "$SDK_DIR/python/cmd/pulumi-language-python-exec" "$STAGE/pulumi-language-python-exec"
for shim in "$SDK_DIR"/python/dist/*; do
  case "$shim" in *.cmd) continue ;; esac
  install -m 0755 "$shim" "$STAGE/$(basename "$shim")"
done

[ "$("$STAGE/pulumi" version)" = "$VERSION" ] || { log "the built CLI does not report $VERSION"; exit 1; }
mkdir -p "$CACHE_ROOT"
rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"
mv "$STAGE" "$DEST.tmp/bin"
printf '%s\n' "$STAMP" >"$DEST.tmp/.complete"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
log "built $VERSION in $(($(date +%s) - started)) s"
printf '%s\n' "$BIN"
