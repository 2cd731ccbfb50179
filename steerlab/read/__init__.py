"""Reading: extraction, probes, readers and their choice, scope, dual speaker, gates, comparisons."""
