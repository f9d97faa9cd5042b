"""Modules get a description (expand: a default, so the old code still works).

Reversible: `migrate workbench 0004_module` drops the column again.
"""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("workbench", "0004_module")]

    operations = [
        migrations.AddField(model_name="module", name="description", field=models.TextField(default="")),
    ]
