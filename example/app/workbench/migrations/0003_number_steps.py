"""Number each workflow's existing steps 0, 1, 2... in id order.

A data migration with no reverse function: Django cannot migrate back past
it (`migrate workbench 0002` fails with IrreversibleError), so a rollback
across this release needs the database restored, not migrated.
"""
from django.db import migrations


def number_steps(apps, schema_editor):
    Step = apps.get_model("workbench", "Step")
    position = {}
    for step in Step.objects.order_by("workflow_id", "id"):
        step.order = position.get(step.workflow_id, 0)
        position[step.workflow_id] = step.order + 1
        step.save(update_fields=["order"])


class Migration(migrations.Migration):
    dependencies = [("workbench", "0002_step_order")]

    operations = [migrations.RunPython(number_steps)]
