# berth's container image, berth:VERSION, for those who build with Docker.
# packaging/build-image builds the same image without a daemon (see
# docs/container-image.md): the statically linked berth and PostgreSQL 15's
# client (pg_dump, pg_restore, psql: the backup pods of `berth db` run them)
# on Debian bookworm, running as the user berth (uid and gid 65532), the
# entrypoint berth. From the repository root (x86_64, like the release):
#
#   docker build -t berth:0.1.0 .
#   docker run --rm berth:0.1.0 --version

# The static build: packaging/build-static (glibc linked in with +crt-static
# on the gnu target, paths remapped).
FROM rust:1.95-bookworm AS build
WORKDIR /berth
COPY . .
# --version's commit and date come from .git; a context without it gives them
# (--build-arg BERTH_COMMIT=SHA --build-arg BERTH_COMMIT_DATE=YYYY-MM-DD)
ARG BERTH_COMMIT BERTH_COMMIT_DATE
RUN packaging/build-static >/dev/null \
 && install -D -m 0755 target/x86_64-unknown-linux-gnu/release/berth /rootfs/usr/local/bin/berth

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-client-15 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 berth \
 && useradd --uid 65532 --gid 65532 --home-dir /home/berth --create-home --shell /sbin/nologin berth
COPY --from=build /rootfs/usr/local/bin/berth /usr/local/bin/berth
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin HOME=/home/berth
USER 65532:65532
WORKDIR /home/berth
ENTRYPOINT ["/usr/local/bin/berth"]
