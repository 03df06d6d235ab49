"""Using a trained model: calibration, predictions, backends, exports, timelines.

Stage 9 (imports everything up to the checkpoint stage, which holds the
format).  ``calibration`` (softmax, temperature scaling, the "unknown"
answer), ``predictor`` (clip-level scores that do only each clip's own
work), ``backends`` (torch or onnxruntime), ``predict`` (files -> predictions),
``submission`` (Tianchi/Kaggle CSVs and failure lists), ``export`` (one ONNX
graph from waveform to probabilities), ``timeline`` and ``windows`` (long
recordings scored window by window).
"""
