from django.contrib import admin

from apps.chat.models import Citation, Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("role", "status", "content", "created")
    readonly_fields = fields


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("title", "user", "created", "updated")
    inlines = [MessageInline]


@admin.register(Citation)
class CitationAdmin(admin.ModelAdmin):
    list_display = ("message", "rank", "file_name", "page", "score")
