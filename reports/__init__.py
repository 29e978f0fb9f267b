"""Weekly report model and its renderers."""
