"""The loop of the long-running worker and cron processes: a log line every
few seconds, until SIGTERM (or SIGINT) stops it at once."""
import logging
import signal
import threading

from django.conf import settings


def run(name, every, line):
    """Log `line` (with a count) every `every` seconds until signalled."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log = logging.getLogger(f"workbench.{name}")
    log.info("%s %s started", name, settings.VERSION)
    count = 0
    while not stop.wait(every):
        count += 1
        log.info("%s %d", line, count)
    log.info("%s stopped by signal after %d", name, count)
