"""Quantisation of the export: calibration sets, the 16x8 graph finalisation, quantisation-aware
fine-tuning (the int8 fake-quant twin) and the per-layer drift report. TensorFlow's converter itself
is driven from toolchain/export/tflite.py only. The graphs' quantisation contract (int8 vs 16x8, scales)
is in docs/ARCHITECTURE.md ("Quantised graphs and the C kernel")."""
