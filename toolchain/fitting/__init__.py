"""Classic hearing-aid fittings: the prescription the compensator starts from, and the baselines."""
