"""Using a trained model: the checkpoint format, predictions, backends, exports, timelines.

Stage 8 (imports everything up to extraction).  ``checkpoint`` (safetensors +
JSON, never pickled), ``checkpoint_files`` (those two files, also of the
training state), ``checkpoint_checks`` (bounds checked before any
allocation), ``predictor`` (clip-level scores that do only each clip's own
work), ``backends`` (torch or onnxruntime), ``predict`` (files -> predictions),
``submission`` (Tianchi/Kaggle CSVs and failure lists), ``export`` (one ONNX
graph from waveform to probabilities), ``timeline`` and ``windows`` (long
recordings scored window by window).
"""
