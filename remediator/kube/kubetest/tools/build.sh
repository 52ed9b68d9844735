#!/usr/bin/env bash
# build.sh builds the control plane the kube tests run against (etcd,
# kube-apiserver, kube-controller-manager) from the Go module proxy, using the
# versions pinned in the go.mod beside this script, into a cache directory
# keyed by those versions. When the three binaries are already there it does
# nothing. Either way it prints the directory on its last line, so callers can
# run: KUBEBUILDER_ASSETS="$(bash build.sh | tail -n 1)".
#
# A cold build takes 7 to 11 minutes on 2 cores; the binaries are never
# committed.
set -euo pipefail

kube_version=v1.37.2
etcd_version=v3.7.3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/companion-remediator"
dest="$cache/kube-$kube_version-etcd-$etcd_version"

if [[ -x "$dest/etcd" && -x "$dest/kube-apiserver" && -x "$dest/kube-controller-manager" ]]; then
	echo "$dest"
	exit 0
fi

mkdir -p "$cache"
work="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The module is built as it is committed: go.sum must already hold every sum.
export GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false -trimpath" CGO_ENABLED=0
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=37"

cd "$here"
start=$SECONDS
echo "building etcd $etcd_version into $dest" >&2
go build -ldflags "-s -w" -o "$work/etcd" go.etcd.io/etcd/server/v3
echo "building kube-apiserver and kube-controller-manager $kube_version" >&2
go build -ldflags "$ldflags" -o "$work/" \
	k8s.io/kubernetes/cmd/kube-apiserver \
	k8s.io/kubernetes/cmd/kube-controller-manager
echo "built in $((SECONDS - start))s" >&2

# Publish all three at once so a half-finished build is never mistaken for a
# finished one.
rm -rf "$dest"
mv "$work" "$dest"
trap - EXIT
echo "$dest"
