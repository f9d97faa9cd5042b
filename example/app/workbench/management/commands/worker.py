"""manage.py worker: the background worker (a heartbeat, here)."""
from django.core.management.base import BaseCommand

from workbench import heartbeat


class Command(BaseCommand):
    help = "Run the worker until SIGTERM."

    def handle(self, *args, **options):
        heartbeat.run("worker", every=5, line="worker heartbeat")
