"""The modules users are offered, which `manage.py import-modules` records."""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("workbench", "0003_number_steps")]

    operations = [
        migrations.CreateModel(
            name="Module",
            fields=[
                ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("slug", models.SlugField(unique=True)),
                ("imported_at", models.DateTimeField()),
            ],
            options={"db_table": "module"},
        ),
    ]
