"""Plain data and the rules under everything: vectors, their files, corpora, names, checks, errors, the cache."""
