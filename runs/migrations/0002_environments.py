from django.db import migrations

ENVIRONMENTS = [
    ("dev", "Development", "DEVELOPMENT"),
    ("staging", "Staging", "STAGING"),
    ("prod", "Production", "PRODUCTION"),
]


def create_environments(apps, schema_editor):  # type: ignore[no-untyped-def]
    Environment = apps.get_model("runs", "Environment")
    for slug, name, kind in ENVIRONMENTS:
        Environment.objects.get_or_create(slug=slug, defaults={"name": name, "kind": kind})


class Migration(migrations.Migration):
    dependencies = [("runs", "0001_initial")]

    operations = [migrations.RunPython(create_environments, migrations.RunPython.noop)]
