"""n3bench: the library behind the DVC stages and the `n3bench` command."""
