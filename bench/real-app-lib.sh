# The example app as the benchmarks deploy it, berth aside: a namespace and
# database per contender, and the seed's own deploy script (cjworkbench's
# deploy/advanced-deploy). Sourced by bench/real-app and bench/rollback after
# lib.sh, with $root, $tmp, $run, $node_address, $pg_port, the arrays
# created_ns, created_db, images and deployments set. Never run.
# shellcheck shell=bash

# environment NAME: sets $ns to a namespace with a database and role of its
# own, and the db-credentials Secret the app's pods and its migration read.
environment() {
    local db=bench_real_${run}_$1
    ns=bench-real-$run-$1
    kubectl create namespace "$ns" >/dev/null
    created_ns+=("$ns")
    created_db+=("$db")
    psql -X -q "$DATABASE_URL" -v ON_ERROR_STOP=1 >/dev/null \
        -c "CREATE ROLE $db LOGIN PASSWORD '$db'" -c "CREATE DATABASE $db OWNER $db"
    kubectl -n "$ns" create secret generic db-credentials --from-literal=PGHOST="$node_address" \
        --from-literal=PGPORT="$pg_port" --from-literal=PGUSER="$db" --from-literal=PGPASSWORD="$db" \
        --from-literal=PGDATABASE="$db" >/dev/null
    until kubectl -n "$ns" get serviceaccount default >/dev/null 2>&1; do sleep 0.1; done
}

# overlays/staging with the images at SHA and without the migration Job
# template, which the script runs as a Job of its own.
kustomization() {
    local dir=$tmp/seed-$1 image
    mkdir -p "$dir"
    {
        echo 'apiVersion: kustomize.config.k8s.io/v1beta1'
        echo 'kind: Kustomization'
        echo 'resources:'
        echo "  - $(realpath --relative-to="$dir" "$root/overlays/staging")"
        echo 'patches:'
        echo '  - target: { kind: Job, labelSelector: "berth.dev/role=migration" }'
        echo '    patch: |-'
        echo '      $patch: delete'
        echo '      apiVersion: batch/v1'
        echo '      kind: Job'
        echo '      metadata:'
        echo '        name: migrate'
        echo 'images:'
        for image in "${images[@]}"; do
            echo "  - { name: 127.0.0.1:25000/workbench/$image, newTag: \"$1\" }"
        done
    } >"$dir/kustomization.yaml"
    echo "$dir"
}
# seed_migrate NS SHA ARG...: the script's migration, `manage.py ARG...` in a
# Job of the migrate image at SHA, polled once a second, then deleted.
seed_migrate() {
    local ns=$1 sha=$2 job=migrate-${2:0:12}-$RANDOM arg command=""
    shift 2
    for arg in python3 manage.py "$@"; do command+="${command:+, }$arg"; done
    kubectl -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata:
  name: $job
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      nodeSelector: {berth.dev/real: "true"}
      tolerations: [{key: berth.dev/real, operator: Exists, effect: NoSchedule}]
      containers:
        - name: migrate
          image: 127.0.0.1:25000/workbench/migrate:$sha
          command: [$command]
          envFrom: [{secretRef: {name: db-credentials}}]
EOF
    until [[ $(kubectl -n "$ns" get job "$job" -o jsonpath='{.status.succeeded}') == 1 ]]; do
        [[ $(kubectl -n "$ns" get job "$job" -o jsonpath='{.status.failed}') == 1 ]] &&
            { echo "seed script: migration failed" >&2; return 1; }
        sleep 1
    done
    kubectl -n "$ns" logs "job/$job" >/dev/null 2>&1 || true
    kubectl -n "$ns" delete job "$job" --wait >/dev/null
}
# seed_apply NS SHA: the overlay at SHA applied, each Deployment's rollout
# waited for in turn.
seed_apply() {
    local ns=$1 sha=$2 d
    kubectl -n "$ns" apply -k "$(kustomization "$sha")" >/dev/null 2>>"$tmp/seed.err"
    for d in "${deployments[@]}"; do
        kubectl -n "$ns" rollout status "deployment/$d" --timeout=5m >/dev/null 2>>"$tmp/seed.err"
    done
}
# seed_deploy NS SHA: the seed's deploy: migrate, then apply and wait.
seed_deploy() {
    seed_migrate "$1" "$2" migrate --noinput
    seed_apply "$1" "$2"
}
