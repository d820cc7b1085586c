"""What the knowledge app tells the apps above it; they connect in their ``AppConfig.ready``.

The knowledge app sits below assets (an asset links its manuals), so it announces instead of
importing upward (tests/test_layering.py).
"""
from django.dispatch import Signal

# Sent by ``document_ingest`` as it starts on a device log (.log, .csv), with ``document`` and
# ``path`` (the stored file). apps.assets reads the lines as readings of the asset.
log_document_ingesting = Signal()
