"""manage.py import-modules SLUG...: record (or refresh) the modules users are
offered; berth's task `refresh-suggested-modules` runs it."""
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug
from django.utils import timezone

from workbench.models import Module


class Command(BaseCommand):
    help = "Import the named modules, or refresh those already imported."

    def add_arguments(self, parser):
        parser.add_argument("slugs", nargs="+", metavar="SLUG")

    def handle(self, *args, slugs, **options):
        for slug in slugs:
            try:
                validate_slug(slug)
            except ValidationError:
                raise CommandError(f"{slug!r} is not a module slug (letters, digits, - and _)")
        for slug in slugs:
            _, created = Module.objects.update_or_create(slug=slug, defaults={"imported_at": timezone.now()})
            self.stdout.write(f"{'imported' if created else 'refreshed'} {slug}")
