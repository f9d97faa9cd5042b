"""Workflow names in capitals: a data migration with no reverse function.

Django cannot unapply it (`migrate workbench 0004_module` raises
IrreversibleError), and the old names are gone from the table: a rollback
across this release needs the database restored from the backup taken
before it ran (`berth rollback ENV --restore-backup`).
"""
from django.db import migrations
from django.db.models.functions import Upper


def uppercase_names(apps, schema_editor):
    Workflow = apps.get_model("workbench", "Workflow")
    Workflow.objects.update(name=Upper("name"))


class Migration(migrations.Migration):
    dependencies = [("workbench", "0004_module")]

    operations = [migrations.RunPython(uppercase_names)]
