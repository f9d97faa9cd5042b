"""Tags users put on their workflows: a new table.

Reversible: `migrate workbench 0005_module_description` drops the table.
"""
from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):
    dependencies = [("workbench", "0005_module_description")]

    operations = [
        migrations.CreateModel(
            name="Tag",
            fields=[
                ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.TextField()),
                (
                    "workflow",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="tags", to="workbench.workflow"
                    ),
                ),
            ],
            options={"db_table": "tag"},
        ),
    ]
