"""The model and its sites: built-in, Hugging Face and local models, families, chat formats, activations."""
