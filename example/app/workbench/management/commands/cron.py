"""manage.py cron: periodic housekeeping, as one long-running process."""
from django.core.management.base import BaseCommand

from workbench import heartbeat


class Command(BaseCommand):
    help = "Run the periodic jobs until SIGTERM."

    def handle(self, *args, **options):
        heartbeat.run("cron", every=10, line="cron tick")
