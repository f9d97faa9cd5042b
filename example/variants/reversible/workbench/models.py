"""cjworkbench's tables that berth's `render_cache:` settings name, and the
modules `manage.py import-modules` records; in this variant
(example/variants/reversible) modules have a description and workflows tags."""
from django.db import models


class Workflow(models.Model):
    """A user's workflow; its row lock is the app's cooperative lock."""

    name = models.TextField()

    class Meta:
        db_table = "workflow"


class Step(models.Model):
    """One step of a workflow, with its cached render result."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="steps")
    slug = models.TextField()
    order = models.IntegerField(default=0)
    cached_render_result_delta_id = models.IntegerField(null=True)
    cached_render_result_errors = models.JSONField(default=list)
    cached_render_result_json = models.BinaryField(default=b"null")
    cached_render_result_status = models.TextField(
        null=True, choices=[("ok", "ok"), ("error", "error"), ("unreachable", "unreachable")]
    )
    cached_render_result_columns = models.JSONField(null=True)
    cached_render_result_nrows = models.IntegerField(null=True)

    class Meta:
        db_table = "step"


class Module(models.Model):
    """A module users are offered, by slug."""

    slug = models.SlugField(unique=True)
    imported_at = models.DateTimeField()
    description = models.TextField(default="")

    class Meta:
        db_table = "module"


class Tag(models.Model):
    """A label a user put on a workflow."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="tags")
    name = models.TextField()

    class Meta:
        db_table = "tag"
