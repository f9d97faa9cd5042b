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

# Fixed local credentials: this environment is for tests and demos only.
minio_user=berthlocal
minio_password=berthlocal-secret
postgres_password=berthlocal

# The components in start order; down stops them in reverse.
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok minio registry postgres)

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
