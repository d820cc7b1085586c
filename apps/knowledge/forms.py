from django import forms

from apps.knowledge.privacy import PRIVACY_CHOICES, privacy_default


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files; each is judged on its own later (apps.knowledge.uploads), so an empty or
    otherwise bad file is one rejected file, never a reason to refuse the whole form."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": ".pdf,.txt,.md,.log,.csv"}))
        kwargs.setdefault("allow_empty_file", True)  # "empty file" is that file's outcome
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        files = data if isinstance(data, (list, tuple)) else [data] if data else []
        if not files:
            raise forms.ValidationError("Choose at least one file.", code="required")
        single = super().clean
        return [single(d, initial) for d in files]


class UploadForm(forms.Form):
    files = MultipleFileField(label="Manuals or logs (PDF, TXT, MD, LOG, CSV)")
    privacy = forms.ChoiceField(
        label="Privacy", choices=PRIVACY_CHOICES, initial=privacy_default, required=False,
        help_text="Restricted documents are only ever read by the model on this device.",
    )

    def clean_privacy(self) -> str | None:
        return self.cleaned_data.get("privacy") or None  # not sent: NANOSENTRI_DEFAULT_PRIVACY
