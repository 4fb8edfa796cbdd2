"""Midbrain networks used only to verify a compensator: ICNet and psi-ICNet (seeds 001-002), with the Keras weight importer."""
