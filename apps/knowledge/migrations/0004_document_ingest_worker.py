from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('knowledge', '0003_versions_ocr_cancel'),
    ]

    operations = [
        migrations.AddField(
            model_name='document',
            name='ingest_worker',
            field=models.CharField(blank=True, max_length=200),
        ),
    ]
