#!/usr/bin/env bash
# Build the test bed's binaries (etcd, kube-apiserver, kube-controller-manager,
# kubectl, minio) from the Go module proxy, cached outside the repository and
# keyed by the hash of their inputs. Prints the bin directory on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${DBOPS_TESTBED_CACHE:-/var/cache/dbops-testbed}"
key="$(cd "$here" && cat build.sh k8s/go.mod k8s/go.sum k8s/cmd/etcd/main.go minio/go.mod minio/go.sum | sha256sum | cut -c1-16)"
bin="$cache_root/$key/bin"
if [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ] && [ -x "$bin/etcd" ] \
   && [ -x "$bin/kubectl" ] && [ -x "$bin/minio" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$bin.partial"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
k8s_version=v1.36.3
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36 -X k8s.io/component-base/version.gitTreeState=clean"
start=$(date +%s)
(cd "$here/k8s" && go build -trimpath -ldflags "$ldflags" -o "$bin.partial/" \
   k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
   k8s.io/kubernetes/cmd/kubectl ./cmd/etcd) >&2
(cd "$here/minio" && go build -trimpath -ldflags "-s -w" -o "$bin.partial/minio" github.com/minio/minio) >&2
rm -rf "$bin" && mv "$bin.partial" "$bin"
echo "testbed: built in $(( $(date +%s) - start ))s into $bin" >&2
echo "$bin"
