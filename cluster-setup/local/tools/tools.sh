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

# tool_key NAME: VERSION-HASH, where HASH covers the wrapper module, its
# go.sum and any patches, so a changed pin or patch builds anew.
tool_key() {
  local v inputs; v=$(tool_version "$1") || return 1
  # shellcheck disable=SC2046
  inputs=$(cat $(tool_inputs "$1") 2>/dev/null | sha256sum | cut -c1-12)
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
