"""Parse, chunk, embed and index documents. Plain Python: no Django models in here."""
