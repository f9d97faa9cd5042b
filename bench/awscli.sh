# awscli for the benchmarks, sourced: a virtualenv per pinned version under
# ${BERTH_CACHE:-~/.cache/berth}/awscli-<version>, installed once from PyPI.
# Defines `aws` (against $AWS_ENDPOINT_URL, with awscli's own defaults) and
# $awscli_dir (bin/awspython runs a Python that imports awscli's botocore).
# Needs $cache set; sets $aws_config, a temporary file the caller removes.
awscli_version=1.46.2
awscli_dir=$cache/awscli-$awscli_version
# A virtualenv per version, built aside and moved into place.
# bin/aws is replaced by a launcher that runs `python -m awscli`, so the venv
# works after the move (pip's console scripts carry the build path). Where
# Python has no venv module (Debian without python3-venv), pip --target.
# bin/awspython runs a Python that imports awscli's botocore (for cleanup).
awscli_ok() {
    [[ -x $awscli_dir/bin/aws && -x $awscli_dir/bin/awspython ]] &&
        "$awscli_dir/bin/aws" --version >/dev/null 2>&1
}
# shellcheck disable=SC2016 # the launchers' $0 and $@ are theirs, not ours
install_awscli() {
    local build log
    mkdir -p "$cache"
    build=$(mktemp -d "$cache/.awscli-$awscli_version.XXXXXX")
    log=$build.log
    echo "installing awscli $awscli_version from PyPI into $awscli_dir" >&2
    if python3 -m venv "$build" >"$log" 2>&1 &&
        "$build/bin/python" -m pip install --quiet --disable-pip-version-check \
            "awscli==$awscli_version" >>"$log" 2>&1; then
        printf '#!/bin/sh\nexec "$(dirname "$0")/python" -m awscli "$@"\n' >"$build/bin/aws"
        printf '#!/bin/sh\nexec "$(dirname "$0")/python" "$@"\n' >"$build/bin/awspython"
    else
        rm -rf "$build"
        mkdir -p "$build/bin"
        python3 -m pip install --quiet --disable-pip-version-check --target "$build/site" \
            "awscli==$awscli_version" >>"$log" 2>&1 || {
            echo "could not install awscli $awscli_version: python3 -m venv and python3 -m pip --target" \
                "both failed (on Debian or Ubuntu: apt-get install python3-venv):" >&2
            tail -n 20 "$log" >&2
            rm -rf "$build" "$log"
            exit 1
        }
        printf '#!/bin/sh\nPYTHONPATH="$(dirname "$0")/../site${PYTHONPATH:+:$PYTHONPATH}"\nexport PYTHONPATH\nexec %s "$@"\n' \
            "$(command -v python3)" >"$build/bin/awspython"
        printf '#!/bin/sh\nexec "$(dirname "$0")/awspython" -m awscli "$@"\n' >"$build/bin/aws"
    fi
    chmod +x "$build/bin/aws" "$build/bin/awspython"
    rm -rf "$awscli_dir.old"
    [[ ! -e $awscli_dir ]] || mv "$awscli_dir" "$awscli_dir.old"
    # Another run may have won the race: keep whichever landed first.
    mv -T "$build" "$awscli_dir" 2>/dev/null || rm -rf "$build"
    rm -rf "$awscli_dir.old" "$log"
}
awscli_ok || install_awscli
awscli_ok || { echo "awscli at $awscli_dir does not run" >&2; exit 1; }
# awscli's own defaults (10 concurrent requests, 8 MB multipart chunks), not a
# ~/.aws/config of whoever runs the bench.
aws_config=$(mktemp)
aws() { AWS_CONFIG_FILE=$aws_config "$awscli_dir/bin/aws" --endpoint-url "$AWS_ENDPOINT_URL" "$@"; }
