"""Models of the ear used to train and check compensators: the neural hearing-loss simulator (seed 003), the differentiable filterbank loss model and the CARFAC cochlea (seed 004)."""
