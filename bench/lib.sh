# Shared by the benchmarks: clock and formatting helpers. Sourced, never run.
# shellcheck shell=bash

# ms: the wall clock in milliseconds.
ms() { echo $(($(date +%s%N) / 1000000)); }
# secs MS: MS milliseconds as seconds with two decimals.
secs() { printf '%d.%02d' $(($1 / 1000)) $(($1 % 1000 / 10)); }
# ratio A B: A / B with two decimals, "-" when B is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
# median N...: the median of integers.
median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
# list_secs MS...: each as seconds, space-separated.
list_secs() {
    local m out=()
    for m in "$@"; do out+=("$(secs "$m")"); done
    echo "${out[*]}"
}
# say TEXT: an indented line of the report.
say() { printf '  %s\n' "$*"; }
