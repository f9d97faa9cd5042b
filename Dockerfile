# berth's container image, berth:VERSION, for those who build with Docker.
# packaging/build-image builds the same image without a daemon (see
# docs/container-image.md): the statically linked berth and CA certificates
# on an empty base, running as the user berth (uid and gid 65532), the
# entrypoint berth. From the repository root (x86_64, like the release):
#
#   docker build -t berth:0.1.0 .
#   docker run --rm berth:0.1.0 --version

# The static build: packaging/build-static (glibc linked in with +crt-static
# on the gnu target, paths remapped), and the image's files beside it.
FROM rust:1.95-bookworm AS build
WORKDIR /berth
COPY . .
# --version's commit and date come from .git; a context without it gives them
# (--build-arg BERTH_COMMIT=SHA --build-arg BERTH_COMMIT_DATE=YYYY-MM-DD)
ARG BERTH_COMMIT BERTH_COMMIT_DATE
RUN packaging/build-static >/dev/null \
 && install -D -m 0755 target/x86_64-unknown-linux-gnu/release/berth /rootfs/usr/local/bin/berth \
 && mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/home/berth \
 && printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
      'berth:x:65532:65532:berth:/home/berth:/sbin/nologin' >/rootfs/etc/passwd \
 && printf '%s\n' 'root:x:0:' 'berth:x:65532:' >/rootfs/etc/group \
 && install -m 0644 /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && chmod 1777 /rootfs/tmp

FROM scratch
COPY --from=build /rootfs /
COPY --from=build --chown=65532:65532 /rootfs/home/berth /home/berth
ENV PATH=/usr/local/bin:/usr/bin:/bin HOME=/home/berth
USER 65532:65532
WORKDIR /home/berth
ENTRYPOINT ["/usr/local/bin/berth"]
