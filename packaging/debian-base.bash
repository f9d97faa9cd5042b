# A Debian base layer built with debootstrap and cached by content, for the
# image builders (example/build-images, packaging/build-image). Source it,
# set `suite`, `mirror`, `packages` (comma-separated) and `path` (the PATH
# inside the chroot), then call
#
#   debian_base NAME
#
# which sets `key` (16 hex digits: the variables above and the text of the
# functions below) and `base`, the layer
# ${BERTH_CACHE:-$HOME/.cache/berth}/images/NAME-KEY.tar.gz, built once per
# machine (a few minutes; builds in parallel wait on one lock). Needs root
# (debootstrap, chroot).
# shellcheck shell=bash disable=SC2154 # the variables above are the caller's

build_base() { # build_base ROOTFS LAYER: debootstrap, security updates, trim, tar
  local root=$1 layer=$2
  debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$root.log" 2>&1 ||
    { tail -n 20 "$root.log" >&2; return 1; }
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s-security %s-security main\n' \
    "$mirror" "$suite" "$mirror" "$suite" "$mirror" "$suite" >"$root/etc/apt/sources.list"
  chroot "$root" /usr/bin/env -i PATH="$path" DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get upgrade -y -qq' >>"$root.log" 2>&1 ||
    { tail -n 20 "$root.log" >&2; return 1; }
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/var/lib/dpkg/*-old "$root"/var/log/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
    "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/usr/share/lintian "$root"/dev/* \
    "$root"/tmp/* "$root"/run/*
  : >"$root/etc/resolv.conf"
  : >"$root/etc/hostname"
  deterministic_tar "$root" . | gzip -n >"$layer"
}

deterministic_tar() { # deterministic_tar DIR PATH...: a reproducible tar on stdout
  local dir=$1
  shift
  tar -C "$dir" --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 --format=gnu -cf - "$@"
}

debian_base() { # debian_base NAME: set key and base, building the layer if it is not cached
  local name=$1 cache scratch
  cache=${BERTH_CACHE:-$HOME/.cache/berth}/images
  key=$({ printf '%s\n' "$suite" "$mirror" "$packages" "$path"; declare -f build_base deterministic_tar; } |
    sha256sum | cut -c1-16)
  base=$cache/$name-$key.tar.gz
  mkdir -p "$cache"
  [[ -s $base ]] && return 0
  scratch=$(mktemp -d)
  (
    flock 9 # one debootstrap per machine, even with builds running in parallel
    if [[ ! -s $base ]]; then
      echo "  building the base layer $name-$key (debootstrap, a few minutes, once per machine)" >&2
      build_base "$scratch/rootfs" "$scratch/base.tar.gz"
      mv "$scratch/base.tar.gz" "$base"
    fi
  ) 9>"$base.lock" || { rm -rf "$scratch"; return 1; }
  rm -rf "$scratch"
}
