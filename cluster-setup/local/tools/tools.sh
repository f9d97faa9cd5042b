# Shared by pin-tools and build-tools: the table of Go-built tools
# (tools.tsv), their pinned versions (versions.env) and their committed
# wrapper modules (tools/<name>/go.mod, go.sum). Sourced, never run.
# shellcheck shell=bash
tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
local_dir=$(cd "$tools_dir/.." && pwd)
# shellcheck source=../versions.env
source "$local_dir/versions.env"
# Builds use only what go.mod and go.sum say: never a newer module, never a
# toolchain download, never a VCS stamp that differs between clones.
export GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=readonly" CGO_ENABLED=0

# tool_names: every tool, in build order.
tool_names() { awk -F'\t' '!/^#/ && NF { print $1 }' "$tools_dir/tools.tsv"; }

# tool_field NAME COLUMN: one column of NAME's row (2 module, 3 version
# variable, 4 packages).
tool_field() {
  awk -F'\t' -v n="$1" -v c="$2" '!/^#/ && $1 == n { print $c; found = 1 } END { exit !found }' \
    "$tools_dir/tools.tsv" || { echo "unknown tool '$1' (see $tools_dir/tools.tsv)" >&2; return 1; }
}

# tool_version NAME: NAME's version from versions.env.
tool_version() {
  local var; var=$(tool_field "$1" 3) || return 1
  [[ -n ${!var:-} ]] || { echo "$var is not set in versions.env" >&2; return 1; }
  echo "${!var}"
}

# tool_inputs NAME: the committed files that determine NAME's binaries.
tool_inputs() {
  echo "$tools_dir/$1/go.mod" "$tools_dir/$1/go.sum"
  if [[ -d $local_dir/patches/$1 ]]; then find "$local_dir/patches/$1" -type f | LC_ALL=C sort; fi
}

# required_version NAME MODULE: the version of MODULE that tools/NAME/go.mod
# requires (the version the build links: pin-tools wrote the whole graph).
required_version() {
  awk -v m="$2" '$1 == "require" { $1 = ""; $0 = $0 } $1 == m && $2 ~ /^v/ { print $2; exit }' \
    "$tools_dir/$1/go.mod"
}

# tool_ldflags NAME: the link flags of NAME's build. Each project's release
# build sets version variables that a plain `go build` leaves at their
# defaults; these set the same ones, so each binary reports what it is
# (kubectl version and /version, the node's containerRuntimeVersion,
# kustomize version, helm version).
tool_ldflags() {
  local name=$1 version flags="-s -w" pkg minor client_go
  version=$(tool_version "$name") || return 1
  case $name in
    containerd) flags+=" -X github.com/containerd/containerd/v2/version.Version=$version" ;;
    # as kustomize's release build stamps it: `kustomize version` prints
    # {Version:kustomize/v4.5.7 ...}, and berth names it in render errors
    kustomize) flags+=" -X sigs.k8s.io/kustomize/api/provenance.version=kustomize/$version" ;;
    kubernetes | kubelet)
      minor=${version#v1.}; minor=${minor%%.*}
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
      done
      ;;
    helm)
      # helm's Makefile on a release tag: the version, a clean tree, no
      # metadata, and the Kubernetes version helm assumes without a cluster
      # (`helm template`'s .Capabilities.KubeVersion, `helm lint`'s
      # deprecation checks) from the client-go it links: client-go v0.X.Y
      # is Kubernetes v1.X. The Makefile's gitCommit is `git rev-parse HEAD`;
      # the module zip carries no git metadata, so it stays empty.
      client_go=$(required_version helm k8s.io/client-go)
      [[ $client_go =~ ^v0\.([0-9]+)\. ]] ||
        { echo "tools/helm/go.mod requires no k8s.io/client-go v0.X.Y (found '$client_go')" >&2; return 1; }
      minor=${BASH_REMATCH[1]}
      flags+=" -X helm.sh/helm/v3/internal/version.version=$version"
      flags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
      for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
      done
      ;;
  esac
  echo "$flags"
}

# tool_key NAME: VERSION-HASH, where HASH covers the wrapper module, its
# go.sum, any patches and the link flags, so a changed pin, patch or flag
# builds anew.
tool_key() {
  local v inputs flags; v=$(tool_version "$1") || return 1
  flags=$(tool_ldflags "$1") || return 1
  # shellcheck disable=SC2046
  inputs=$({ cat $(tool_inputs "$1") 2>/dev/null; echo "ldflags: $flags"; } | sha256sum | cut -c1-12)
  echo "$v-$inputs"
}

# prepare_patched_source NAME MODULE VERSION DIR: the module's source from
# the module cache, with patches/NAME applied, in DIR (for a replace line).
prepare_patched_source() {
  local name=$1 module=$2 version=$3 dest=$4 src patch
  local json
  # inside a wrapper module, go checks the download against its go.sum
  json=$(go mod download -json "$module@$version") ||
    { echo "could not download $module@$version (see above)" >&2; return 1; }
  src=$(sed -n 's/.*"Dir": "\(.*\)".*/\1/p' <<<"$json")
  rm -rf "$dest" && cp -r "$src" "$dest" && chmod -R u+w "$dest"
  for patch in "$local_dir/patches/$name"/*.patch; do
    patch -s -p1 -d "$dest" <"$patch"
  done
  # whole new files, at their path in the module: patches/NAME/files/...
  if [[ -d $local_dir/patches/$name/files ]]; then
    cp -r "$local_dir/patches/$name/files/." "$dest/"
  fi
}
