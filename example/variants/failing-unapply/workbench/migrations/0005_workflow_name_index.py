"""An index on workflow names, whose unapply fails while the table
`berth_block_unapply` exists (a test's switch, see example/README.md).

Reversible: unapplying drops the index, then checks the switch; when it
raises, the migration's transaction rolls back and 0005 stays applied.
"""
from django.db import migrations

MARKER = "berth_block_unapply"


def refuse_while_blocked(apps, schema_editor):
    if MARKER in schema_editor.connection.introspection.table_names():
        raise RuntimeError(f"unapply blocked on purpose: the table {MARKER} exists")


class Migration(migrations.Migration):
    dependencies = [("workbench", "0004_module")]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, refuse_while_blocked),
        migrations.RunSQL(
            "CREATE INDEX workflow_name_idx ON workflow (name)",
            "DROP INDEX workflow_name_idx",
        ),
    ]
