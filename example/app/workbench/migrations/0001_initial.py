from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Workflow",
            fields=[
                ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.TextField()),
            ],
            options={"db_table": "workflow"},
        ),
        migrations.CreateModel(
            name="Step",
            fields=[
                ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("slug", models.TextField()),
                ("cached_render_result_delta_id", models.IntegerField(null=True)),
                ("cached_render_result_errors", models.JSONField(default=list)),
                ("cached_render_result_json", models.BinaryField(default=b"null")),
                (
                    "cached_render_result_status",
                    models.TextField(
                        choices=[("ok", "ok"), ("error", "error"), ("unreachable", "unreachable")], null=True
                    ),
                ),
                ("cached_render_result_columns", models.JSONField(null=True)),
                ("cached_render_result_nrows", models.IntegerField(null=True)),
                (
                    "workflow",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="steps", to="workbench.workflow"
                    ),
                ),
            ],
            options={"db_table": "step"},
        ),
    ]
