"""Notes on workflows, a table the models do not use (raw SQL, reversible)."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("workbench", "0005_workflow_name_index")]

    operations = [
        migrations.RunSQL(
            "CREATE TABLE workflow_note ("
            " id serial PRIMARY KEY,"
            " workflow_id integer NOT NULL REFERENCES workflow (id) ON DELETE CASCADE,"
            " body text NOT NULL)",
            "DROP TABLE workflow_note",
        ),
    ]
