from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0009_citation_source'),
    ]

    operations = [
        migrations.CreateModel(
            name='AnswerProcess',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(max_length=32, unique=True)),
                ('host', models.CharField(max_length=255)),
                ('pid', models.PositiveIntegerField()),
                ('started', models.DateTimeField(auto_now_add=True)),
                ('seen', models.DateTimeField(db_index=True)),
            ],
        ),
        migrations.AddField(
            model_name='message',
            name='process_key',
            field=models.CharField(blank=True, max_length=32),
        ),
        migrations.AddIndex(
            model_name='message',
            index=models.Index(condition=models.Q(('status__in', ['pending', 'streaming'])), fields=['status'], name='chat_message_in_flight'),
        ),
    ]
