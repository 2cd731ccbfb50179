"""Steering: edits (the one place alpha becomes a norm), pyvene interventions and generation under them."""
