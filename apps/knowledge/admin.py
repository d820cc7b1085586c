from django.contrib import admin

from apps.knowledge.models import Document


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ("original_name", "status", "privacy", "page_count", "chunk_count", "uploaded_by", "created")
    list_filter = ("status", "privacy", "extension")
    list_editable = ("privacy",)
    search_fields = ("original_name", "content_hash")
    readonly_fields = ("content_hash", "stored_path", "created", "updated", "started_at", "indexed_at")
