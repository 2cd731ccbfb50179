"""llama.cpp control vectors and the check against llama.cpp."""
