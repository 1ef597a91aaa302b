#!/usr/bin/env bash
# Build Helm (pinned in helm/go.mod) from the Go module proxy, cached outside the repository
# beside the other test-bed binaries and keyed by the hash of its own inputs (so changing it
# does not rebuild Kubernetes). Prints the bin directory on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${DBOPS_TESTBED_CACHE:-/var/cache/dbops-testbed}"
key="$(cd "$here" && cat build-helm.sh helm/go.mod helm/go.sum helm/tools.go | sha256sum | cut -c1-16)"
bin="$cache_root/helm-$key/bin"
if [ -x "$bin/helm" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$bin.partial"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
version="$(awk '{for (i = 1; i < NF; i++) if ($i == "helm.sh/helm/v3") {print $(i + 1); exit}}' "$here/helm/go.mod")"
# As Helm's Makefile does: the Kubernetes version `helm template` and `helm lint` assume, from client-go's.
k8s_minor="$(awk '{for (i = 1; i < NF; i++) if ($i == "k8s.io/client-go") {split($(i + 1), v, "."); print v[2]; exit}}' "$here/helm/go.mod")"
start=$(date +%s)
(cd "$here/helm" && go build -trimpath \
   -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
     -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor \
     -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor" \
   -o "$bin.partial/helm" helm.sh/helm/v3/cmd/helm) >&2
rm -rf "$bin" && mv "$bin.partial" "$bin"
echo "testbed: built helm $version in $(( $(date +%s) - start ))s into $bin" >&2
echo "$bin"
