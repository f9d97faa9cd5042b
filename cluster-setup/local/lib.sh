# Shared by up, down and build-tools: where the local environment lives and
# which loopback ports it uses. Sourced, never run.
# shellcheck shell=bash
local_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$local_dir/../.." && pwd)
state=${BERTH_LOCAL_STATE:-$repo_root/.berth/local}
pids="$state/pids"
logs="$state/logs"
pki="$state/pki"

# Every server listens on 127.0.0.1 only, on these ports.
host=127.0.0.1
port_etcd=${BERTH_PORT_ETCD:-23790}
port_etcd_peer=${BERTH_PORT_ETCD_PEER:-23791}
port_apiserver=${BERTH_PORT_APISERVER:-26443}
port_kcm=${BERTH_PORT_KCM:-20257}
port_scheduler=${BERTH_PORT_SCHEDULER:-20259}
port_kwok=${BERTH_PORT_KWOK:-20250}
port_minio=${BERTH_PORT_MINIO:-29000}
port_minio_console=${BERTH_PORT_MINIO_CONSOLE:-29001}
port_registry=${BERTH_PORT_REGISTRY:-25000}
port_postgres=${BERTH_PORT_POSTGRES:-25432}

# The real node real-0 (node.sh). Pods and Services use the benchmark-testing
# range 198.18.0.0/15, never a private range: real-0's pods get
# 198.18.0.0/24 on the bridge, whose host address is the node's IP and the
# address pods reach the host's PostgreSQL at; kwok's fake pods get
# 198.18.128.0/17; Services get 198.19.0.0/16.
node_name=real-0
node_bridge=berthbr0
# our nftables table: drops pod traffic that would leave the bridge
node_table=berth-node
node_address=198.18.0.1
node_pod_cidr=198.18.0.0/24
kwok_pod_cidr=198.18.128.0/17
service_cidr=198.19.0.0/16
kubernetes_service_ip=198.19.0.1
port_kubelet=${BERTH_PORT_KUBELET:-10250}
port_kubelet_healthz=${BERTH_PORT_KUBELET_HEALTHZ:-20248}
port_kube_proxy_healthz=${BERTH_PORT_KUBE_PROXY_HEALTHZ:-20256}
port_kube_proxy_metrics=${BERTH_PORT_KUBE_PROXY_METRICS:-20249}
# The layout of the state directory; a state from an older layout (another
# service range, no real node) must be purged before `up` reuses it.
state_layout=real-node-1

# Fixed local credentials: this environment is for tests and demos only.
minio_user=berthlocal
minio_password=berthlocal-secret
postgres_password=berthlocal

# minio-bridge: a socat forwarding the bridge address's MinIO port to MinIO
# on 127.0.0.1, so pods on real-0 reach S3 at http://198.18.0.1:<port>.
# The components in start order; down stops them in reverse (the real
# node's three first, by stop_real_node in node.sh).
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok minio registry postgres
  minio-bridge containerd kubelet kube-proxy)
# Where build-tools caches the binaries it builds.
tools_cache=${BERTH_CACHE:-$HOME/.cache/berth}

say() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

# pid_of NAME: the PID recorded for NAME, if that process is still alive.
pid_of() {
  local f="$pids/$1.pid" pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

# check_pid_namespace: refuse to manage PID files written from another PID
# namespace (a shell under `unshare --pid`, a container sharing the
# directory): every recorded PID would look dead there, and `up` would
# start a second environment over the running one.
check_pid_namespace() {
  local mine recorded
  mine=$(readlink /proc/self/ns/pid)
  mkdir -p "$pids"
  if [[ -f $state/pid-namespace ]] && compgen -G "$pids/*.pid" >/dev/null; then
    recorded=$(<"$state/pid-namespace")
    [[ $recorded == "$mine" ]] ||
      die "the local environment's processes were started in PID namespace $recorded, this shell is in $mine; run up and down from there"
  fi
  echo "$mine" >"$state/pid-namespace"
}

# Each tool's bin directory as build-tools names it (TOOL=DIR lines), asked
# once per script: the names hash every tool's pins.
tool_dirs=$("$local_dir/build-tools" --print)

# tool_bin TOOL BINARY: path of a binary built by build-tools.
tool_bin() { echo "$(sed -n "s/^$1=//p" <<<"$tool_dirs")/$2"; }
