# The real node real-0: containerd, runc, the CNI bridge, kubelet and
# kube-proxy, beside kwok's fake nodes. Sourced by up, down and leftovers
# after lib.sh, never run. What it takes on this kind of machine (cgroup v1,
# no CAP_SYS_RESOURCE, a node IP on a bridge, a pause image built here) is in
# ../shared/research/realnode.md and README.md beside this file.
# shellcheck shell=bash

node_dir="$state/node"
# Paths the node's components write outside $state, whatever their flags say:
# containerd's shim sockets and runc state, pod network namespaces, CNI's
# result cache, the kubelet's device-plugin socket. `up` records which of
# them existed before, so `down` removes only what the node created.
node_host_paths=(/run/containerd /run/netns /var/lib/cni /var/lib/kubelet)
# The v1 cgroup hierarchies the kubelet creates /kubepods in.
node_cgroup_roots() { ls -d /sys/fs/cgroup/*/ 2>/dev/null | grep -v /unified/; }

# node_pki: the node's identities, signed by the environment's CA: the
# kubelet's client (system:node:real-0) and serving certificates, kube-proxy's
# client, and the client the apiserver presents to kubelets (no anonymous
# kubelet access).
node_pki() {
  [[ -f $pki/kubelet-serving.crt ]] && return 0
  say "creating the real node's certificates"
  cd "$pki"
  sign kubelet-client "/O=system:nodes/CN=system:node:$node_name" clientAuth
  sign kubelet-serving "/CN=$node_name" serverAuth "IP:$node_address,DNS:$node_name"
  sign kube-proxy "/CN=system:kube-proxy" clientAuth
  sign apiserver-kubelet-client "/O=system:masters/CN=berth-apiserver-kubelet-client" clientAuth
  cd - >/dev/null
}

# sign NAME SUBJECT USAGE [SANS]: NAME.key and NAME.crt signed by the CA (in $pki).
sign() {
  openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  { echo "extendedKeyUsage=$3"; [[ -z ${4:-} ]] || echo "subjectAltName=$4"; } >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

# node_kubeconfig NAME: a kubeconfig for the client certificate NAME.
node_kubeconfig() {
  local kc="$node_dir/$1.kubeconfig"
  [[ -f $kc ]] && return 0
  KUBECONFIG=$kc kubectl config set-cluster berth-local --server="https://$host:$port_apiserver" \
    --certificate-authority="$pki/ca.crt" --embed-certs >/dev/null
  KUBECONFIG=$kc kubectl config set-credentials "$1" --client-certificate="$pki/$1.crt" \
    --client-key="$pki/$1.key" --embed-certs >/dev/null
  KUBECONFIG=$kc kubectl config set-context default --cluster=berth-local --user="$1" >/dev/null
  KUBECONFIG=$kc kubectl config use-context default >/dev/null
}

# node_bridge: the bridge pods attach to; its address is the node's IP (the
# kubelet refuses a loopback one) and the address pods reach the host at.
# Service addresses route to it, so nothing meant for a Service can leave
# the machine.
node_bridge() {
  ip link show "$node_bridge" >/dev/null 2>&1 && return 0
  say "creating bridge $node_bridge ($node_address/24)"
  ip link add "$node_bridge" type bridge
  ip addr add "$node_address/24" dev "$node_bridge"
  ip link set "$node_bridge" up
  ip route replace "$service_cidr" dev "$node_bridge" src "$node_address"
}

# node_firewall: pods may reach this machine and each other, never beyond
# it: the host may forward packets (net.ipv4.ip_forward is not ours to
# change), so a table of our own drops whatever would leave the bridge.
node_firewall() {
  nft list table inet "$node_table" >/dev/null 2>&1 && return 0
  nft -f - <<NFT
table inet $node_table {
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "$node_bridge" oifname != "$node_bridge" counter drop
  }
}
NFT
}

# record_host_paths: which of node_host_paths existed before the node first
# ran, so down removes only what the node created.
record_host_paths() {
  local f="$node_dir/preexisting" p
  [[ -f $f ]] && return 0
  for p in "${node_host_paths[@]}"; do [[ -e $p ]] && echo "$p"; done >"$f"
  return 0
}

# pause_image: sets $pause_image to the sandbox image every pod needs, built
# from the pause.c of the pinned Kubernetes source (registry.k8s.io is out
# of reach), cached and tagged by the kubelet tool's key (its version and
# go.sum), and pushed to the local registry.
pause_image() {
  local src crane layer work cache_dir key
  crane=$(tool_bin crane crane)
  key=$(basename "$(dirname "$(tool_bin kubelet kubelet)")")
  key=${key#kubelet-}
  cache_dir=$tools_cache/images
  layer="$cache_dir/pause-$key.tar.gz"
  pause_image="$host:$port_registry/berth-local/pause:$key"
  if [[ ! -f $layer ]]; then
    # the source go.sum checks, from the module cache (downloaded if absent)
    src=$(cd "$local_dir/tools/kubelet" && GOFLAGS=-mod=readonly GOTOOLCHAIN=local \
      go mod download -json k8s.io/kubernetes | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/build/pause/linux/pause.c
    [[ -f $src ]] || die "pause.c not found in the kubernetes module ($src)"
    say "building the pause image from $src"
    work=$(mktemp -d)
    mkdir -p "$work/root" "$cache_dir"
    gcc -Os -static -DVERSION="berth-local-$key" -o "$work/root/pause" "$src"
    strip "$work/root/pause"
    tar --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name -C "$work/root" -cf - . |
      gzip -9 -n >"$work/layer.tar.gz"
    mv "$work/layer.tar.gz" "$layer"
    rm -rf "$work"
  fi
  "$crane" manifest --insecure "$pause_image" >/dev/null 2>&1 && return 0
  "$crane" append --insecure -f "$layer" -t "$pause_image-base" >/dev/null 2>&1
  "$crane" mutate --insecure --set-platform=linux/amd64 --entrypoint=/pause \
    -t "$pause_image" "$pause_image-base" >/dev/null 2>&1
}

# replace_if_changed FILE: FILE's new content from stdin, written only when
# it differs (kube-proxy exits when its configuration file changes, even to
# the same content).
replace_if_changed() {
  local new; new=$(cat)
  [[ -f $1 && $(<"$1") == "$new" ]] && return 0
  printf '%s\n' "$new" >"$1.tmp" && mv "$1.tmp" "$1"
}

write_node_config() {
  local bin_containerd bin_runc bin_cni
  bin_containerd=$(dirname "$(tool_bin containerd containerd)")
  bin_runc=$(tool_bin runc runc)
  bin_cni=$(dirname "$(tool_bin cni bridge)")
  mkdir -p "$node_dir"/{containerd,net.d,cni-ipam,kubelet,pod-logs} "$node_dir/certs.d/$host:$port_registry"
  replace_if_changed "$node_dir/containerd.toml" <<TOML
# Written by cluster-setup/local/up.
version = 3
root = "$node_dir/containerd/root"
state = "$node_dir/containerd/state"
[grpc]
  address = "$node_dir/containerd/containerd.sock"
[ttrpc]
  address = "$node_dir/containerd/containerd.sock.ttrpc"
[debug]
  level = "warn"
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "$pause_image"
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = "$node_dir/certs.d"
  [plugins.'io.containerd.cri.v1.runtime']
    enable_selinux = false
    # the VM has no CAP_SYS_RESOURCE: clamp pods' oom_score_adj to containerd's own
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "$bin_runc"
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["$bin_cni"]
      conf_dir = "$node_dir/net.d"
      max_conf_num = 1
  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = "$host"
    stream_server_port = "0"
TOML
  # the local registry speaks plain HTTP
  printf 'server = "http://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' \
    "$host:$port_registry" "$host:$port_registry" | replace_if_changed "$node_dir/certs.d/$host:$port_registry/hosts.toml"
  replace_if_changed "$node_dir/net.d/10-berth.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "berth", "plugins": [
  {"type": "bridge", "bridge": "$node_bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$node_dir/cni-ipam",
            "ranges": [[{"subnet": "$node_pod_cidr", "gateway": "$node_address"}]]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
  replace_if_changed "$node_dir/kubelet.yaml" <<YAML
# Written by cluster-setup/local/up.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# the host has cgroup v1 only (see realnode.md) and no systemd
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: true
containerRuntimeEndpoint: unix://$node_dir/containerd/containerd.sock
address: $node_address
port: $port_kubelet
readOnlyPort: 0
healthzBindAddress: $host
healthzPort: $port_kubelet_healthz
# only the apiserver's client certificate gets in; it is authorized by the apiserver
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
registerWithTaints: [{key: berth.dev/real, value: "true", effect: NoSchedule}]
# pods' resolv.conf names the node, where no DNS server listens: a lookup
# fails at once instead of going to the host's resolver (off this machine)
clusterDNS: [$node_address]
clusterDomain: cluster.local
podLogsDir: $node_dir/pod-logs
# leave the host's firewall alone: kube-proxy has its own nftables tables
makeIPTablesUtilChains: false
failSwapOn: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
maxPods: 60
syncFrequency: 10s
nodeStatusUpdateFrequency: 10s
YAML
  replace_if_changed "$node_dir/kube-proxy.yaml" <<YAML
# Written by cluster-setup/local/up.
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
hostnameOverride: $node_name
bindAddress: $node_address
healthzBindAddress: $host:$port_kube_proxy_healthz
metricsBindAddress: $host:$port_kube_proxy_metrics
clusterCIDR: $node_pod_cidr
nodePortAddresses: ["$node_address/32"]
clientConnection: {kubeconfig: $node_dir/kube-proxy.kubeconfig}
# leave the host's conntrack settings alone
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
YAML
}

# start_real_node: bridge, containerd, kubelet, kube-proxy; waits until the
# Node is Ready.
start_real_node() {
  local k8s containerd_bin kc="$state/kubeconfig"
  k8s=$(dirname "$(tool_bin kubelet kubelet)")
  containerd_bin=$(dirname "$(tool_bin containerd containerd)")
  mkdir -p "$node_dir"
  record_host_paths
  node_firewall
  node_kubeconfig kubelet-client
  node_kubeconfig kube-proxy
  pause_image
  write_node_config
  # the shim and runc must be on containerd's PATH
  PATH="$containerd_bin:$(dirname "$(tool_bin runc runc)"):$PATH" \
    start containerd "$containerd_bin/containerd" --config="$node_dir/containerd.toml"
  wait_until containerd 30 test -S "$node_dir/containerd/containerd.sock"
  start kubelet "$k8s/kubelet" --config="$node_dir/kubelet.yaml" \
    --kubeconfig="$node_dir/kubelet-client.kubeconfig" --hostname-override="$node_name" \
    --node-ip="$node_address" --root-dir="$node_dir/kubelet" --cert-dir="$node_dir/kubelet/pki" \
    --node-labels=berth.dev/real=true --v=1
  start kube-proxy "$k8s/kube-proxy" --config="$node_dir/kube-proxy.yaml" --v=1
  wait_until kubelet 60 env KUBECONFIG="$kc" kubectl wait --for=condition=Ready "node/$node_name" --timeout=1s
  wait_until kube-proxy 30 curl -fsS "http://$host:$port_kube_proxy_healthz/healthz"
}

# stop_real_node: remove every pod sandbox while containerd still runs, stop
# kube-proxy, kubelet and containerd by PID, then undo what they did to the
# host (mounts, firewall tables, cgroups, /run and /var paths, shims).
stop_real_node() {
  local crictl sock="$node_dir/containerd/containerd.sock"
  stop kube-proxy
  stop kubelet
  crictl=$(tool_bin crictl crictl)
  if pid_of containerd >/dev/null && [[ -S $sock && -x $crictl ]]; then
    say "removing the real node's pods"
    "$crictl" --runtime-endpoint "unix://$sock" --timeout 30s rmp --all --force >/dev/null 2>&1 || true
  fi
  stop containerd
  node_cleanup
}

# node_cleanup: what the node's components leave on the host after they stop.
node_cleanup() {
  local m p t
  # without this record the node never ran here: there is nothing of it to remove
  [[ -f $node_dir/preexisting ]] || return 0
  # shims started by our containerd outlive it; they run from our binary,
  # of any build in the cache: a containerd started before its pin or link
  # flags changed runs from an older cache entry than tool_bin names
  for p in $(pgrep -f "containerd-shim-runc-v2" || true); do
    case $(readlink "/proc/$p/exe" 2>/dev/null) in
      "$tools_cache"/bin/containerd-*/containerd-shim-runc-v2) kill -KILL "$p" 2>/dev/null ;;
    esac
  done
  # deepest first: pod volumes, then the kubelet's bind mount of its root
  awk -v d="$node_dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for t in "ip kube-proxy" "ip6 kube-proxy" "inet $node_table"; do
    nft list table $t >/dev/null 2>&1 && nft delete table $t
  done
  for m in $(node_cgroup_roots); do
    [[ -d ${m}kubepods ]] && find "${m}kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  for p in "${node_host_paths[@]}"; do
    grep -qxF "$p" "$node_dir/preexisting" 2>/dev/null || rm -rf "$p"
  done
  ip link show "$node_bridge" >/dev/null 2>&1 && ip link del "$node_bridge"
  return 0
}

# node_leftovers: print each trace of the real node on the host, one per line.
node_leftovers() {
  local p m shim t
  shim=$(dirname "$(tool_bin containerd containerd)")/containerd-shim-runc-v2
  for p in $(pgrep -f "containerd|kubelet|kube-proxy" || true); do
    case $(readlink "/proc/$p/exe" 2>/dev/null) in
      "$tools_cache"/bin/*) echo "process $p ($(basename "$(readlink "/proc/$p/exe")"))" ;;
    esac
  done
  awk -v d="$node_dir/" 'index($5, d) == 1 { print "mount " $5 }' /proc/self/mountinfo
  ip link show "$node_bridge" >/dev/null 2>&1 && echo "bridge $node_bridge"
  ip -o link show type veth 2>/dev/null | grep -q "master $node_bridge" && echo "veth on $node_bridge"
  for t in "ip kube-proxy" "ip6 kube-proxy" "inet $node_table"; do
    nft list table $t >/dev/null 2>&1 && echo "nftables table $t"
  done
  for m in $(node_cgroup_roots); do [[ -d ${m}kubepods ]] && echo "cgroup ${m}kubepods"; done
  for p in "${node_host_paths[@]}"; do
    [[ -e $p ]] && ! grep -qxF "$p" "$node_dir/preexisting" 2>/dev/null && echo "path $p"
  done
  [[ -d /run/netns ]] && ls /run/netns | grep -q '^cni-' && echo "network namespaces in /run/netns"
  return 0
}
