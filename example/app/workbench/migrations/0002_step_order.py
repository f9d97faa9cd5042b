"""Steps get a position in their workflow (expand: a default, so old code works)."""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("workbench", "0001_initial")]

    operations = [migrations.AddField(model_name="step", name="order", field=models.IntegerField(default=0))]
