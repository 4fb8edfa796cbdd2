"""Compensators: the networks that pre-process sound for an impaired ear (SEANet on the device, the STFT student), their causal streaming layers and the checkpoint registry."""
